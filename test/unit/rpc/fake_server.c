/*
 * A JSON-RPC server on the fake VDCM, for testing siovctl end to end without
 * siovd: fake_server SOCKET [STATE_DIR].  Serves until SIGTERM, SIGINT or 30 s.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "siov_internal/loop.h"
#include "siov_internal/rpc.h"
#include "siov_internal/util.h"
#include "fake_vdcm.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	g_stop = 1;
}

int main(int argc, char **argv)
{
	struct siov_rpc_server_opts opts = {0};
	struct siov_rpc_server *srv;
	struct siov_loop *loop;
	struct siov_vdcm *vdcm;
	uint64_t deadline = siov_now_ns() + 30000000000ull;
	int rc;

	if (argc < 2) {
		fprintf(stderr, "usage: fake_server SOCKET [STATE_DIR]\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (siov_loop_create(&loop) < 0 || siov_vdcm_create(NULL, &vdcm) < 0)
		return 1;
	opts.loop = loop;
	opts.vdcm = vdcm;
	opts.socket_path = argv[1];
	opts.state_dir = argc > 2 ? argv[2] : NULL;
	rc = siov_rpc_server_create(&opts, &srv);
	if (rc < 0) {
		fprintf(stderr, "fake_server: cannot serve on %s: %d\n", argv[1], rc);
		return 1;
	}
	while (!g_stop && siov_now_ns() < deadline)
		siov_loop_run_once(loop, 100);
	siov_rpc_server_destroy(srv);
	siov_vdcm_destroy(vdcm);
	siov_loop_destroy(loop);
	return 0;
}
