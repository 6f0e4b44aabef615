#!/bin/bash
# Makes a test CA and one certificate per agent for blockrepl's mutual TLS (openssl only).
#
#   deploy/tls/make-certs.sh DIR NAME[,SAN...] [NAME[,SAN...] ...]
#   deploy/tls/make-certs.sh /etc/blockrepl/tls pa1.site-a.example.net sb1.site-b.example.net,IP:10.2.0.21
#
# DIR gets ca.crt/ca.key (kept if they exist, so more agents can be added later) and, per NAME,
# NAME.crt/NAME.key: an EC P-256 key, a certificate signed by the CA with CN=NAME and subjectAltName
# DNS:NAME plus the extra SANs given (DNS:x, IP:a.b.c.d), valid for DAYS (default 825) days, usable
# as TLS server and client (each agent is both, in turn). Agents take:
#   --tls-cert=DIR/NAME.crt --tls-key=DIR/NAME.key --tls-ca=DIR/ca.crt [--peer-name=OTHER_NAME]
# For production use your organisation's CA; this is for tests, labs and small setups.
set -euo pipefail
# Runs openssl quietly, but shows its messages when it fails.
quiet() {
  local log
  log=$(mktemp)
  if ! "$@" 2>"$log"; then
    cat "$log" >&2
    rm -f "$log"
    echo "make-certs: failed: $*" >&2
    exit 1
  fi
  rm -f "$log"
}
if [[ $# -lt 2 ]]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
DIR=$1
shift
DAYS=${DAYS:-825}
mkdir -p "$DIR"
umask 077
if [[ ! -f $DIR/ca.key ]]; then
  quiet openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -keyout "$DIR/ca.key" -out "$DIR/ca.crt" -subj "/CN=blockrepl test CA $(date +%s)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  echo "make-certs: new CA $DIR/ca.crt"
fi
for spec in "$@"; do
  IFS=, read -r name extra <<<"$spec"
  san="DNS:$name"
  [[ -n ${extra:-} ]] && san="$san,${extra}"
  quiet openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$DIR/$name.key" \
    -out "$DIR/$name.csr" -subj "/CN=$name"
  quiet openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days "$DAYS" -out "$DIR/$name.crt" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' "$san")
  rm -f "$DIR/$name.csr"
  echo "make-certs: $DIR/$name.crt ($san)"
done
chmod 644 "$DIR"/*.crt
