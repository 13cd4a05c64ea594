#!/usr/bin/env bash
# Throwaway TLS certificates for the local secure broker and Redis
# (kafka.sh start-secure, redis.sh start-secure): a CA and one server
# certificate for 127.0.0.1/localhost, with the openssl CLI.
#
# Usage:
#   certs.sh CERT_DIR [DAYS]   write, if not there yet:
#     ca.pem               the CA certificate (clients trust this file)
#     ca.key               the CA key (mode 600)
#     server.pem           server certificate, SAN IP:127.0.0.1 DNS:localhost,
#                          usable for server and client auth (the broker also
#                          presents it to its own controller listener)
#     server.key           its key, unencrypted PKCS#8 (mode 600)
#     server-keystore.pem  key + certificate chain: Kafka's PEM keystore
#
# For development and tests only: the keys are unencrypted and the CA is
# local. Nothing is printed on stdout.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"
LOG_PREFIX=certs.sh

[[ $# -ge 1 && $# -le 2 ]] || die "usage: certs.sh CERT_DIR [DAYS]"
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
dir=$(abs_dir "$1")
days=${2:-30}
[[ $days =~ ^[0-9]+$ ]] || die "DAYS must be a number, not '$days'"

if [[ -s $dir/server-keystore.pem && -s $dir/ca.pem ]]; then
    log "certificates already in $dir"
    exit 0
fi

umask 077
tmp=$(mktemp -d "$dir/.certs.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
# P-256 keys: quick to make, and both Java and OpenSSL take them as PKCS#8.
newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc)

openssl req -x509 "${newkey[@]}" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
    -days "$days" -subj "/CN=twinmon local CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$tmp/err" \
    || { cat "$tmp/err" >&2; die "cannot make the CA"; }

openssl req "${newkey[@]}" -keyout "$tmp/server.key" -out "$tmp/server.csr" \
    -subj "/CN=twinmon-broker" 2>"$tmp/err" \
    || { cat "$tmp/err" >&2; die "cannot make the server key"; }

cat >"$tmp/ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EXT
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days "$days" -extfile "$tmp/ext" -out "$tmp/server.pem" 2>"$tmp/err" \
    || { cat "$tmp/err" >&2; die "cannot sign the server certificate"; }

cat "$tmp/server.key" "$tmp/server.pem" "$tmp/ca.pem" >"$tmp/server-keystore.pem"
chmod 644 "$tmp/ca.pem" "$tmp/server.pem"
for f in ca.pem ca.key server.pem server.key server-keystore.pem; do
    mv -f -- "$tmp/$f" "$dir/$f"
done
log "wrote a CA and a server certificate for 127.0.0.1/localhost to $dir (valid $days days)"
