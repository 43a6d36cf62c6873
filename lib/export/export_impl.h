/*
 * What the files of lib/export/ share: listening sockets (listen.c) and
 * GnuTLS credentials and sessions (tls.c), used by the server loop (export.c).
 */
#ifndef SIOV_EXPORT_IMPL_H
#define SIOV_EXPORT_IMPL_H

#include <stdbool.h>
#include <stdlib.h>

#include <gnutls/gnutls.h>

#include "siov_internal/export.h"

/* A listening, non-blocking socket for c->listen, or -errno with err set. */
int siov__export_listen(const struct siov_export_conf *c, struct siov_err *err);
/* Closes it and removes a Unix socket file. */
void siov__export_unlisten(const struct siov_export_conf *c, int fd);

struct siov_export_tls;
int siov__export_tls_open(const char *dir, struct siov_export_tls **out, struct siov_err *err);
void siov__export_tls_close(struct siov_export_tls *t);
/* A non-blocking server session on fd. */
int siov__export_tls_session(struct siov_export_tls *t, int fd, gnutls_session_t *out);

#endif
