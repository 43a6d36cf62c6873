/*
 * TLS for NBD exports with GnuTLS, with the file layout nbdkit and QEMU use
 * for x509 credentials: DIR/server-cert.pem and DIR/server-key.pem, and, if
 * DIR/ca-cert.pem exists, client certificates are required and verified
 * against it (QEMU's verify-peer default for servers).  Sessions are
 * non-blocking: the export's event loop drives the handshake.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "export_impl.h"

struct siov_export_tls {
	gnutls_certificate_credentials_t cred;
	bool verify_peer;
};

static int file_in(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int siov__export_tls_open(const char *dir, struct siov_export_tls **out, struct siov_err *err)
{
	struct siov_export_tls *t = calloc(1, sizeof(*t));
	char cert[1200], key[1200], ca[1200];
	int rc;

	if (!t)
		return siov_err_set(err, -ENOMEM, "out of memory");
	if (file_in(cert, sizeof(cert), dir, "server-cert.pem") ||
	    file_in(key, sizeof(key), dir, "server-key.pem") ||
	    file_in(ca, sizeof(ca), dir, "ca-cert.pem")) {
		free(t);
		return siov_err_set(err, -ENAMETOOLONG, "tls_creds '%s': path too long", dir);
	}
	if (gnutls_certificate_allocate_credentials(&t->cred) < 0) {
		free(t);
		return siov_err_set(err, -ENOMEM, "GnuTLS: cannot allocate credentials");
	}
	rc = gnutls_certificate_set_x509_key_file(t->cred, cert, key, GNUTLS_X509_FMT_PEM);
	if (rc < 0) {
		siov_err_set(err, -EINVAL, "tls_creds '%s': cannot load %s and %s: %s", dir, cert,
			     key, gnutls_strerror(rc));
		goto err;
	}
	if (access(ca, R_OK) == 0) {
		rc = gnutls_certificate_set_x509_trust_file(t->cred, ca, GNUTLS_X509_FMT_PEM);
		if (rc < 0) {
			siov_err_set(err, -EINVAL, "tls_creds '%s': cannot load %s: %s", dir, ca,
				     gnutls_strerror(rc));
			goto err;
		}
		t->verify_peer = true;
	}
	*out = t;
	return 0;

err:
	gnutls_certificate_free_credentials(t->cred);
	free(t);
	return -EINVAL;
}

void siov__export_tls_close(struct siov_export_tls *t)
{
	if (!t)
		return;
	gnutls_certificate_free_credentials(t->cred);
	free(t);
}

int siov__export_tls_session(struct siov_export_tls *t, int fd, gnutls_session_t *out)
{
	gnutls_session_t s;

	if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0)
		return -ENOMEM;
	if (gnutls_set_default_priority(s) < 0 ||
	    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->cred) < 0) {
		gnutls_deinit(s);
		return -EINVAL;
	}
	if (t->verify_peer) {
		gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
		/* Checked against ca-cert.pem during the handshake; no host name for clients. */
		gnutls_session_set_verify_cert(s, NULL, 0);
	}
	gnutls_transport_set_int(s, fd);
	*out = s;
	return 0;
}
