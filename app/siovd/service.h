/* siovd's systemd integration (service.c): readiness, stopping, watchdog. */
#ifndef SIOVD_SERVICE_H
#define SIOVD_SERVICE_H

struct siov_loop;
struct siovd_service;

/* Arms the watchdog timer on loop if systemd asked for one. */
int siovd_service_start(struct siov_loop *loop, struct siovd_service **out);
void siovd_service_ready(struct siovd_service *s, unsigned vdevs, unsigned backends);
void siovd_service_stopping(struct siovd_service *s);
void siovd_service_stop(struct siovd_service *s);

#endif
