"""Real recorded data as twinmon readings, for evaluation and demonstration.

``mimic_numerics_events`` reads the per-minute bedside-monitor numerics of one MIMIC-III Waveform Database
patient (``../shared/data/mimic3wdb-s25047-numerics-per-minute.csv``, see that folder's README for source and
licence) and turns each sample into a ``Reading``. ``nan`` means the monitor reported nothing that minute and
gives no reading; zeros are the monitor's own probe/lead-off output and are kept, so that they reach the twin
and are rejected there, as they would be in production.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from twin_state.catalogue import Metric
from twin_state.twin import Reading

MS_PER_MINUTE = 60_000
DEFAULT_START_MS = 1_763_942_400_000

MIMIC_COLUMNS: tuple[tuple[str, Metric, str], ...] = (
    # (CSV column, metric, device suffix). ECG leads give heart rate and, by impedance, respiration;
    # the pulse oximeter (pleth) gives pulse rate and SpO2; the cuff gives non-invasive blood pressure.
    ("HR_bpm", Metric.HEART_RATE, "monitor-ecg"),
    ("RESP_pm", Metric.RESP_RATE, "monitor-ecg"),
    ("PULSE_bpm", Metric.HEART_RATE, "monitor-pleth"),
    ("SpO2_pct", Metric.SPO2, "monitor-pleth"),
    ("NBPSys_mmHg", Metric.BP_SYSTOLIC, "monitor-nibp"),
    ("NBPDias_mmHg", Metric.BP_DIASTOLIC, "monitor-nibp"),
)
"""NBPMean_mmHg is not mapped: the catalogue has no mean arterial pressure."""


def mimic_numerics_events(
    path: Path | str,
    patient_id: str = "mimic-s25047",
    start_ms: int = DEFAULT_START_MS,
) -> list[Reading]:
    """The CSV's samples as readings, ordered by minute, then by ``MIMIC_COLUMNS`` order within a minute.

    ``measured_at`` is ``start_ms + minute * 60000``; each device's ``seq`` counts its readings from 0.
    The device id is the device suffix ("monitor-ecg", "monitor-pleth", "monitor-nibp") as it is on the
    monitor: one patient per CSV.
    """
    seqs: dict[str, int] = {}
    readings: list[Reading] = []
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            minute = float(row["minute"])
            measured_at = start_ms + round(minute * MS_PER_MINUTE)
            for column, metric, device in MIMIC_COLUMNS:
                value = float(row[column])
                if math.isnan(value):
                    continue
                seq = seqs.get(device, 0)
                seqs[device] = seq + 1
                readings.append(Reading(patient_id, device, metric, value, measured_at, seq))
    return readings
