"""FHIR R4 endpoints of the feed, team-scoped like the rest: the resources themselves come from the pure
``feed.fhir`` (vital-sign Observations, alert Flags, Observation ingest)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import JSONResponse

from alerts import codec as alert_codec
from feed import models, presenters
from feed.deps import FeedDep, Who
from feed.errors import ApiError, not_found
from feed.fhir import FhirError, alert_flag, observations_to_wire, vital_observations
from streams.enrolment import ANCHORED_ID

FHIR_JSON = "application/fhir+json"
PatientId = Annotated[str, Path(pattern=ANCHORED_ID, description="Patient id")]


class FhirJSON(JSONResponse):
    media_type = FHIR_JSON


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle", "type": "searchset", "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


router = APIRouter()


def _now_ms() -> int:
    return int(time.time() * 1000)


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.OperationOutcome, "description": "Missing or unknown bearer token"},
    404: {"model": models.OperationOutcome, "description": "No such patient in your care team"},
    422: {"model": models.OperationOutcome, "description": "Not a resource twinmon can take"},
    429: {"model": models.OperationOutcome, "description": "This token's request rate is used up "
          "(TWINMON_API_RATE_PER_S, _BURST); issue code throttled", "headers": models.RETRY_AFTER},
}
BUNDLE: dict[int | str, dict[str, Any]] = {
    **ERRORS, 200: {"description": "A FHIR R4 Bundle (searchset)", "content": {FHIR_JSON: {}}}}

@router.get("/fhir/Patient/{patient_id}/Observation", tags=["fhir"], response_class=FhirJSON,
         responses=BUNDLE)
async def fhir_observations(feed: FeedDep, who: Who, patient_id: PatientId) -> FhirJSON:
    """The patient's current vitals as R4 vital-signs Observations (LOINC, UCUM, filtered estimates)."""
    profile = await feed.require(who, patient_id)
    twin, _, _ = presenters.this_episode(profile, await feed.twins.get(patient_id), None)
    found = vital_observations(patient_id, twin, _now_ms()) if twin is not None else []
    return FhirJSON(_without_nulls(searchset(found)))

@router.get("/fhir/Flag", tags=["fhir"], response_class=FhirJSON, responses=BUNDLE)
async def fhir_flags(feed: FeedDep, who: Who, patient: Annotated[str, Query(pattern=ANCHORED_ID)]) -> FhirJSON:
    """The patient's open alerts as R4 Flags (another team's patient matches nothing)."""
    flags: list[dict[str, Any]] = []
    profile = await feed.in_team(who.team, patient)
    if profile is not None:
        stored = await feed.twins.get_alert_state(patient)
        _, state, _ = presenters.this_episode(profile, None, alert_codec.unpack(stored) if stored else None)
        at = _now_ms()
        flags = [alert_flag(patient, a, at) for a in (state.open.values() if state else ())]
    return FhirJSON(_without_nulls(searchset(flags)))

@router.post("/fhir/Observation", tags=["fhir"], status_code=202, response_model=models.OperationOutcome,
          response_class=FhirJSON,
          responses={**ERRORS, 413: {"model": models.OperationOutcome, "description": "Request body too large"}})
async def fhir_ingest(feed: FeedDep, who: Who, resource: Annotated[dict[str, Any], Body(
        description="A FHIR R4 vital-sign Observation, or a Bundle of them")]) -> models.OperationOutcome:
    """Ingest vital-sign Observations into the vitals topic (a second input format); all or nothing."""
    try:
        messages = observations_to_wire(resource, _now_ms())
    except FhirError as exc:
        raise ApiError(422, str(exc)) from None
    if not messages:
        raise ApiError(422, "no vital-sign Observation in the request")
    by_patient = Counter(str(orjson.loads(m)["patient_id"]) for m in messages)
    for pid in by_patient:
        if not await feed.in_team(who.team, pid):
            raise not_found()
    # Who entered which patient's readings is audited first, as every other change a person makes.
    for pid, n in sorted(by_patient.items()):
        await feed.audit_record(who, "observe", pid, reason=f"{n} readings (FHIR Observation)")
    futures = [await feed.producer.send(feed.settings.topic_vitals, m,
                                        key=str(orjson.loads(m)["patient_id"]).encode()) for m in messages]
    for f in futures:
        await f
    return models.OperationOutcome(issue=[models.OutcomeIssue(
        severity="information", code="informational",
        diagnostics=f"{len(messages)} readings sent to the workers")])


def _without_nulls(doc: Any) -> Any:
    """FHIR JSON has no nulls: an absent element is left out."""
    if isinstance(doc, dict):
        return {k: _without_nulls(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        return [_without_nulls(v) for v in doc]
    return doc
