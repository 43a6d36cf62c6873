/*
 * siov-bench's shared pieces: the options, one job per thread (a queue of one
 * VDEV), and the latency histogram.  main.c parses and reports, job.c runs the
 * I/O loop, hist.c keeps latencies without allocating per request.
 */
#ifndef SIOV_BENCH_H
#define SIOV_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "siov/libsiov.h"

#define BENCH_SOCKETS_MAX 4096

enum bench_rw { RW_READ, RW_WRITE, RW_RANDREAD, RW_RANDWRITE, RW_RANDRW };

struct bench_opts {
	const char *sockets[BENCH_SOCKETS_MAX];
	unsigned nsockets;
	enum bench_rw rw;
	unsigned rwmixread; /* percent of reads in randrw */
	uint32_t bs;
	unsigned iodepth;
	unsigned numjobs; /* per socket */
	double runtime;	  /* seconds */
	uint64_t size;	  /* bytes of each device to use, 0 = all */
	bool verify;
	bool irq;
	unsigned poll_us; /* --irq: poll this long before sleeping */
	pid_t target_pid;
	bool json;
	unsigned threads;      /* 0: a thread per job; else jobs spread over this many (polling) */
	bool per_socket;       /* report IOPS per socket as well */
	unsigned reconnect_ms; /* libsiov reconnect budget, 0 = off */
	bool dirty_log;	       /* --dirty-log: keep the back end logging (migration cost) */
	bool packed;	       /* --packed: packed virtqueues if the device offers them */
	bool in_order;	       /* --in-order: VIRTIO_F_IN_ORDER, refused if not offered */
};

/*
 * Log-linear latency histogram: 32 linear buckets per power of two (error
 * under 3%), 1920 counters, merged across jobs at the end.
 */
#define HIST_SUB_BITS 5
#define HIST_BUCKETS  1920
struct hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t n, sum_ns, max_ns;
};
void hist_add(struct hist *h, uint64_t ns);
void hist_merge(struct hist *dst, const struct hist *src);
uint64_t hist_percentile(const struct hist *h, double p);

/* One thread: one queue of one device, its buffers and its counters. */
struct job {
	const struct bench_opts *o;
	struct siov_queue *q;
	unsigned id;
	uint8_t *buf;	     /* iodepth * bs bytes of registered memory */
	uint64_t base, span; /* the byte range this job addresses */
	struct hist hist;
	uint64_t ios, bytes, errors, verify_errors, verified;
	uint64_t loops, empty_loops; /* reaps, and reaps that found nothing */
	int fatal;		     /* -errno that stopped the job early */
	uint32_t *pregen;	     /* generations job_prefill() wrote */
	uint64_t rng;
};

/* Set by main when the measured window closes; jobs then drain and return. */
extern atomic_bool bench_stop;
/* Set by main when the measured window opens; jobs wait for it. */
extern atomic_bool bench_go;

/* Runs @arg (a struct job) until bench_stop; a pthread start routine. */
void *job_run(void *arg);

/* Jobs that share one thread (--threads). */
struct job_set {
	struct job **jobs;
	unsigned n;
};
/* Runs every job of @arg (a struct job_set) in turn until bench_stop. */
void *job_run_many(void *arg);
/* Writes every block of the job's range once, so verified reads have data. */
int job_prefill(struct job *j);

#endif
