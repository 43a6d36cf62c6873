/*
 * What siovctl's files share: a connection to siovd's JSON-RPC socket and one
 * call on it, without exiting on failure (siovctl top keeps going), and the
 * top view itself.
 */
#ifndef SIOVCTL_H
#define SIOVCTL_H

struct json_object;

/* A connected socket, or -errno and *why. */
int siovctl_connect(const char *path, int timeout_s, const char **why);
/* Calls method with params (taken over; may be NULL): the response, or NULL. */
struct json_object *siovctl_call(int fd, const char *method, struct json_object *params);
/* siovctl top: argv[0] is "top". */
int siovctl_top(const char *sock, int timeout_s, int argc, char **argv);

#endif
