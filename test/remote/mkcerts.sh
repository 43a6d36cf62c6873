#!/bin/bash
# mkcerts.sh DIR: a throw-away CA, a server certificate for 127.0.0.1 and a
# client certificate, made with GnuTLS's certtool, laid out as nbdkit, QEMU,
# libnbd and siovd's export expect:
#   DIR/server/{ca-cert,server-cert,server-key}.pem
#   DIR/client/{ca-cert,client-cert,client-key}.pem
set -euo pipefail
d=$1
command -v certtool >/dev/null || { echo "certtool missing (gnutls-bin)" >&2; exit 77; }
mkdir -p "$d/server" "$d/client"
cd "$d"
cat >ca.info <<I
cn = siov test CA
ca
cert_signing_key
expiration_days = 2
I
cat >server.info <<I
organization = siov test
cn = localhost
ip_address = 127.0.0.1
dns_name = localhost
tls_www_server
encryption_key
signing_key
expiration_days = 2
I
cat >client.info <<I
country = GB
organization = siov test
cn = siov client
tls_www_client
encryption_key
signing_key
expiration_days = 2
I
q() { "$@" >/dev/null 2>&1; }
q certtool --generate-privkey --outfile ca-key.pem
q certtool --generate-self-signed --load-privkey ca-key.pem --template ca.info --outfile ca-cert.pem
for w in server client; do
	q certtool --generate-privkey --outfile "$w/$w-key.pem"
	q certtool --generate-certificate --load-privkey "$w/$w-key.pem" --load-ca-certificate ca-cert.pem \
		--load-ca-privkey ca-key.pem --template $w.info --outfile "$w/$w-cert.pem"
	cp ca-cert.pem "$w/"
done
chmod 600 server/server-key.pem client/client-key.pem
