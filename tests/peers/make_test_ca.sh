#!/bin/sh
# Test CA for the MCP peers: make_test_ca.sh OUTDIR NAME...
#
# Writes OUTDIR/ca.pem, ca.key (a self-signed CA) and OUTDIR/server.pem, server.key (a leaf
# for serverAuth signed by it) whose subjectAltName lists every NAME: IPv4/IPv6 literals become
# IP entries, anything else a DNS entry. EC P-256 keys, 7 days. Needs only the openssl CLI.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 OUTDIR NAME..." >&2
    exit 2
fi
out=$1
shift
mkdir -p "$out"

san=""
for n in "$@"; do
    case $n in
        *:*) entry="IP:$n" ;;        # IPv6 literal
        *[!0-9.]*) entry="DNS:$n" ;; # a name
        *) entry="IP:$n" ;;          # IPv4 literal
    esac
    san="${san:+$san,}$entry"
done

umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca.key" 2>/dev/null
openssl req -x509 -new -key "$out/ca.key" -sha256 -days 7 \
    -subj "/CN=mcpgw test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$out/ca.pem"

openssl ecparam -name prime256v1 -genkey -noout -out "$out/server.key" 2>/dev/null
openssl req -new -key "$out/server.key" -subj "/CN=$1" -out "$tmp/server.csr"
cat > "$tmp/ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EXT
openssl x509 -req -in "$tmp/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
    -CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days 7 -extfile "$tmp/ext" \
    -out "$out/server.pem" 2>/dev/null

# Certificates are public; keys stay private to the owner but the peers run as root.
chmod 644 "$out/ca.pem" "$out/server.pem"
chmod 600 "$out/ca.key" "$out/server.key"
