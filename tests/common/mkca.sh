#!/usr/bin/env bash
# mkca.sh DIR [CN] - a throwaway test PKI made with the openssl CLI, for the
# TLS tests (never for real use: unprotected keys, valid for two days).
#
# Writes into DIR (created if missing):
#   ca.pem ca.key              the test CA
#   server.pem server.key      a server certificate for 127.0.0.1, ::1 and
#                              localhost, signed by the CA
#   client.pem client.key      a client certificate with CN=CN (default
#                              alice), signed by the CA
#   nocn.pem nocn.key          a client certificate without a CN
#   twocn.pem twocn.key        one with two CNs (CN, then mallory)
#   rogue-ca.pem rogue-ca.key  another CA, which nothing trusts
#   rogue.pem rogue.key        a client certificate with CN=CN signed by the
#                              rogue CA (must be refused)
# Prints nothing on success; on failure, openssl's messages and exit 1.
set -euo pipefail
dir=${1:?usage: mkca.sh DIR [CN]}
cn=${2:-alice}
mkdir -p "$dir"
cd "$dir"
log=$(mktemp)
trap 'rm -f "$log" ./*.csr ./*.ext ./*.srl' EXIT
fail() { cat "$log" >&2; echo "mkca.sh: $1 failed" >&2; exit 1; }

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
            -out "$1" >>"$log" 2>&1 || fail "key $1"; }

ca() { # ca NAME SUBJECT
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -sha256 -days 2 -subj "$2" \
        -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign \
        -out "$1.pem" >>"$log" 2>&1 || fail "CA $1"
}

leaf() { # leaf NAME SUBJECT CA EXTFILE-TEXT
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" \
        >>"$log" 2>&1 || fail "request $1"
    printf '%s\n' "$4" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" \
        -CAcreateserial -days 2 -sha256 -extfile "$1.ext" \
        -out "$1.pem" >>"$log" 2>&1 || fail "certificate $1"
}

ca ca "/CN=chand test CA"
ca rogue-ca "/CN=chand rogue CA"
leaf server "/CN=localhost" ca \
    "basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"
leaf client "/CN=$cn" ca \
    "basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=clientAuth"
leaf nocn "/O=chand test" ca \
    "basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=clientAuth"
leaf twocn "/CN=$cn/CN=mallory" ca \
    "basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=clientAuth"
leaf rogue "/CN=$cn" rogue-ca \
    "basicConstraints=CA:FALSE
keyUsage=digitalSignature
extendedKeyUsage=clientAuth"
