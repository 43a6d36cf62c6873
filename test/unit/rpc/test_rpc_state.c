/*
 * The state file, against the real VDCM (real backends and sockets in a
 * temporary directory): what the RPC methods save comes back identical in a
 * fresh VDCM, the save leaves no temporary file and a private mode, a missing file
 * is an empty configuration, and a damaged or hostile file is refused whole
 * (nothing created) with a message naming the bad entry.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ftw.h>

#include "rpc_test.h"
#include "vdcm_probe.h"
#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "siov_internal/state.h"
#include "../../../lib/ctrl/rpc_internal.h"

static char g_dir[64];	/* the state directory: siovd.json and nothing else */
static char g_work[64]; /* the VDEVs' sockets and the file backend's file */
static char g_file[128];
static char g_buf[4096];
static struct siov_loop *g_loop;

/* A real VDCM with one engine, on the test's loop. */
static void vnew(struct siov_vdcm **out)
{
	struct siov_vdcm_opts vo = {.loop = g_loop, .engines = 1, .poll_us = 10};

	assert_int_equal(siov_vdcm_create(&vo, out), 0);
}

static int setup(void **state)
{
	siov_log_set_level(SIOV_LOG_ERR);
	strcpy(g_dir, "/tmp/siov-state-XXXXXX");
	strcpy(g_work, "/tmp/siov-statew-XXXXXX");
	if (!mkdtemp(g_dir) || !mkdtemp(g_work) || siov_loop_create(&g_loop) < 0)
		return -1;
	snprintf(g_file, sizeof(g_file), "%s/siovd.json", g_dir);
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	DIR *d = opendir(g_dir);
	struct dirent *e;
	char path[512];

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' && (!e->d_name[1] || !strcmp(e->d_name, "..")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", g_dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(g_dir);
	nftw(g_work, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	siov_loop_destroy(g_loop);
	return 0;
}

static unsigned dir_entries(void)
{
	DIR *d = opendir(g_dir);
	struct dirent *e;
	unsigned n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static void write_state(const char *text)
{
	int fd = open(g_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Builds a configuration through the RPC methods with persistence on. */
static void populate(struct siov_vdcm *vdcm)
{
	struct siov_rpc_server_opts opts = {.vdcm = vdcm, .state_dir = g_dir};
	struct siov_rpc_server *srv;
	char p[512];
	int fd;

	snprintf(p, sizeof(p), "%s/x.img", g_work);
	fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 << 20), 0);
	close(fd);
	assert_int_equal(siov_rpc_server_create(&opts, &srv), 0);
	rpc_expect_true(
	    srv, REQ("backend_create", "{\"name\":\"ram0\",\"type\":\"ram\",\"size\":\"1G\"}"));
	snprintf(p, sizeof(p),
		 "{\"name\":\"file0\",\"type\":\"file\",\"path\":\"%s/x.img\",\"readonly\":true}",
		 g_work);
	rpc_expect_true(srv, REQ("backend_create", p));
	rpc_expect_true(
	    srv, REQ("backend_create", "{\"name\":\"gone\",\"type\":\"null\",\"size\":4096}"));
	snprintf(p, sizeof(p),
		 "{\"name\":\"vm1\",\"backend\":\"ram0\",\"size\":\"256M\","
		 "\"queues\":4,\"socket\":\"%s/vm1.sock\"}",
		 g_work);
	rpc_expect_true(srv, REQ("vdev_create", p));
	snprintf(p, sizeof(p),
		 "{\"name\":\"vm2\",\"backend\":\"ram0\",\"offset\":\"128M\","
		 "\"size\":\"256M\",\"readonly\":true,\"allow_overlap\":true,"
		 "\"socket\":\"%s/vm2.sock\"}",
		 g_work);
	rpc_expect_true(srv, REQ("vdev_create", p));
	rpc_expect_true(srv, REQ("backend_delete", "{\"name\":\"gone\"}"));
	siov_rpc_server_destroy(srv);
}

static void test_round_trip(void **state)
{
	struct siov_backend_conf ram0, file0;
	struct siov_vdev_conf vm[2];
	struct siov_vdcm *a, *b;
	struct siov_err err = {0};
	struct stat st;
	const char *names[] = {"vm1", "vm2"};

	vnew(&a);
	populate(a);
	/* Atomic save: the file alone, private, no temporary left behind. */
	assert_int_equal(stat(g_file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(dir_entries(), 1);
	ram0 = *probe_backend(a, "ram0");
	file0 = *probe_backend(a, "file0");
	for (int i = 0; i < 2; i++)
		vm[i] = *probe_vdev(a, names[i]);
	/* The next siovd serves the same sockets: the old one goes first. */
	siov_vdcm_destroy(a);
	vnew(&b);
	assert_int_equal(siov_state_load(b, g_dir, &err), 0);
	assert_int_equal(probe_backends(b), 2);
	assert_int_equal(probe_vdevs(b), 2);
	assert_null(probe_backend(b, "gone"));
	assert_memory_equal(&ram0, probe_backend(b, "ram0"), sizeof(ram0));
	assert_memory_equal(&file0, probe_backend(b, "file0"), sizeof(file0));
	for (int i = 0; i < 2; i++)
		assert_memory_equal(&vm[i], probe_vdev(b, names[i]), sizeof(vm[i]));
	assert_true(probe_vdev(b, "vm2")->allow_overlap);
	assert_int_equal(probe_vdev(b, "vm1")->queues, 4);
	siov_vdcm_destroy(b);
}

/* network_create/delete/list: checked, listed, saved and restored like the rest. */
static void test_networks(void **state)
{
	struct siov_rpc_server_opts opts = {.state_dir = g_dir};
	struct siov_rpc_server *srv;
	struct siov_vdcm *a, *b;
	struct siov_err err = {0};
	struct json_object *list;
	char *text;

	vnew(&a);
	vnew(&b);
	opts.vdcm = a;
	assert_int_equal(siov_rpc_server_create(&opts, &srv), 0);
	rpc_expect_true(srv, REQ("network_create", "{\"name\":\"t1\"}"));
	rpc_expect_true(srv, REQ("network_create", "{\"name\":\"t2\",\"mtu\":9000}"));
	rpc_expect_true(srv, REQ("network_create", "{\"name\":\"gone\"}"));
	rpc_expect_error(srv, REQ("network_create", "{\"name\":\"t1\"}"), -EEXIST, "exists");
	rpc_expect_error(srv, REQ("network_create", "{\"name\":\"t3\",\"mtu\":67}"), -32602, "mtu");
	rpc_expect_error(srv, REQ("network_create", "{\"name\":\"t3\",\"uplink\":\"eth0\"}"),
			 -32602, "tap:");
	rpc_expect_error(srv, REQ("network_create", "{\"name\":\"t3\",\"uplink\":\"tap:a/b\"}"),
			 -32602, "uplink");
	rpc_expect_error(srv, REQ("network_create", "{\"name\":\"t3\",\"vlan\":3}"), -32602,
			 "vlan");
	rpc_expect_true(srv, REQ("network_delete", "{\"name\":\"gone\"}"));
	rpc_expect_error(srv, REQ("network_delete", "{\"name\":\"gone\"}"), -ENOENT, "gone");
	list = rpc_expect_result(srv, REQ("network_list", NULL));
	text = strdup(json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN));
	assert_string_equal(text, "[{\"name\":\"t1\",\"mtu\":1500,\"ports\":0,\"learned\":0},"
				  "{\"name\":\"t2\",\"mtu\":9000,\"ports\":0,\"learned\":0}]");
	json_object_put(list);
	siov_rpc_server_destroy(srv);

	/* A restart brings both back, in order, with their MTUs. */
	assert_int_equal(siov_state_load(b, g_dir, &err), 0);
	opts.vdcm = b;
	opts.state_dir = NULL;
	assert_int_equal(siov_rpc_server_create(&opts, &srv), 0);
	list = rpc_expect_result(srv, REQ("network_list", NULL));
	assert_string_equal(json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN), text);
	json_object_put(list);
	free(text);
	siov_rpc_server_destroy(srv);
	siov_vdcm_destroy(a);
	siov_vdcm_destroy(b);
}

/*
 * What a network port is asked that only a disk has: refused with a reason
 * (siovd used to follow the port's missing disk model and crash); QoS works.
 */
static void test_net_port_methods(void **state)
{
	struct siov_rpc_server_opts opts = {.state_dir = g_dir};
	struct siov_rpc_server *srv;
	struct siov_vdcm *v;
	char p[512];

	vnew(&v);
	opts.vdcm = v;
	assert_int_equal(siov_rpc_server_create(&opts, &srv), 0);
	rpc_expect_true(srv, REQ("network_create", "{\"name\":\"t1\"}"));
	rpc_expect_true(
	    srv, REQ("backend_create", "{\"name\":\"ram0\",\"type\":\"ram\",\"size\":\"1G\"}"));
	snprintf(p, sizeof(p),
		 "{\"name\":\"p1\",\"type\":\"net\",\"network\":\"t1\",\"socket\":\"%s/p1.sock\"}",
		 g_work);
	rpc_expect_true(srv, REQ("vdev_create", p));
	snprintf(p, sizeof(p),
		 "{\"name\":\"p2\",\"type\":\"net\",\"network\":\"t1\",\"socket\":\"%s/p2.sock\","
		 "\"error_policy\":\"hold\"}",
		 g_work);
	rpc_expect_error(srv, REQ("vdev_create", p), -32602, "for blk VDEVs");
	rpc_expect_error(
	    srv, REQ("vdev_set_error_policy", "{\"name\":\"p1\",\"error_policy\":\"hold\"}"),
	    -EINVAL, "network port");
	rpc_expect_error(srv, REQ("vdev_resume", "{\"name\":\"p1\"}"), -EINVAL, "network port");
	rpc_expect_error(srv, REQ("vdev_move", "{\"name\":\"p1\",\"backend\":\"ram0\"}"), -EINVAL,
			 "network port");
	snprintf(p, sizeof(p), "{\"vdev\":\"p1\",\"listen\":\"unix:%s/p1.nbd\"}", g_work);
	rpc_expect_error(srv, REQ("export_create", p), -EINVAL, "network port");
	rpc_expect_true(srv, REQ("vdev_set_qos", "{\"name\":\"p1\",\"pps_limit\":1000}"));
	rpc_expect_true(srv, REQ("vdev_set_qos", "{\"name\":\"p1\",\"pps_limit\":0}"));
	rpc_expect_true(srv, REQ("vdev_delete", "{\"name\":\"p1\"}"));
	siov_rpc_server_destroy(srv);
	siov_vdcm_destroy(v);
}

/* A stale temporary from a crash is removed, and the snapshot is rewritten whole. */
static void test_save_over_leftovers(void **state)
{
	struct siov_vdcm *v;
	struct siov_err err = {0};
	char tmp[160];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s/.siovd.json.tmp", g_dir);
	fd = open(tmp, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage garbage garbage", 23), 23);
	close(fd);
	write_state("{\"version\":1}");
	vnew(&v);
	populate(v);
	assert_int_equal(dir_entries(), 1);
	siov_vdcm_destroy(v);
	vnew(&v);
	assert_int_equal(siov_state_load(v, g_dir, &err), 0);
	assert_int_equal(probe_vdevs(v), 2);
	siov_vdcm_destroy(v);
}

/* A server journaling into g_dir with backend ram0; *vdcm is its fake VDCM. */
static struct siov_rpc_server *start_ram0(uint64_t compact_records, struct siov_vdcm **vdcm)
{
	struct siov_rpc_server_opts opts = {.state_dir = g_dir, .compact_records = compact_records};
	struct siov_rpc_server *srv;

	vnew(vdcm);
	opts.vdcm = *vdcm;
	assert_int_equal(siov_rpc_server_create(&opts, &srv), 0);
	rpc_expect_true(
	    srv, REQ("backend_create", "{\"name\":\"ram0\",\"type\":\"ram\",\"size\":\"1G\"}"));
	return srv;
}

static void create_small(struct siov_rpc_server *srv, int i)
{
	char p[256];

	snprintf(p, sizeof(p),
		 "{\"name\":\"vm%d\",\"backend\":\"ram0\",\"size\":4096,"
		 "\"offset\":%d,\"socket\":\"%s/vm%d.sock\"}",
		 i, i * 4096, g_work, i);
	rpc_expect_true(srv, REQ("vdev_create", p));
}

/* The journal a crashed siovd leaves: the records of populate(), not compacted. */
static void crash_populate(uint64_t compact_records, char *journal, size_t size)
{
	struct siov_vdcm *a;
	struct siov_rpc_server *srv = start_ram0(compact_records, &a);
	int fd;

	for (int i = 0; i < 5; i++)
		create_small(srv, i);
	rpc_expect_true(srv, REQ("vdev_delete", "{\"name\":\"vm0\"}"));
	/* A crash: copy the files as they are now, before the clean close folds them. */
	snprintf(journal, size, "%s/siovd.journal.0", g_dir);
	fd = open(journal, O_RDONLY);
	if (fd >= 0) {
		char cmd[1024];
		close(fd);
		snprintf(cmd, sizeof(cmd), "cp -a %s %s.crash && cp -a %s %s.crash", journal,
			 journal, g_file, g_file);
		assert_int_equal(system(cmd), 0);
	}
	siov_rpc_server_destroy(srv);
	siov_vdcm_destroy(a);
}

/*
 * What a read-only recovery of g_dir finds, as the number of VDEVs (every
 * object but backend ram0): it recreates nothing, so it may run while a
 * server still holds the VDEVs' sockets.
 */
static int load_count(int *vdevs, struct siov_err *err)
{
	struct siov_state_opts o = {.dir = g_dir, .readonly = true};
	struct siov_state *st;
	uint64_t entries = 0, seq;
	int rc = siov_state_open(&o, &st, err);

	*vdevs = 0;
	if (rc < 0)
		return rc;
	siov_state_recovered(st, &entries, &seq);
	siov_state_close(st);
	*vdevs = (int)entries - 1;
	return 0;
}

static void put_back_crash(const char *journal, long cut)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "cp %s.crash %s && truncate -s %ld %s && cp %s.crash %s",
		 journal, journal, cut, journal, g_file, g_file);
	assert_int_equal(system(cmd), 0);
}

/* Where the records of a journal end: the writer keeps zeros after them. */
static off_t records_end(const char *path)
{
	char buf[4096];
	off_t end = 0, off = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i])
				end = off + i + 1;
		off += n;
	}
	close(fd);
	return end;
}

static off_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/*
 * Recovery = snapshot + journal.  The whole journal gives every change; a
 * last record cut anywhere (a crash while writing it) loses that record only;
 * a damaged record with good ones after it refuses the dir, with its line.
 */
static void test_journal_recovery(void **state)
{
	struct siov_err err = {0};
	char journal[160], crash[200];
	off_t size;
	int vdevs;

	crash_populate(0, journal, sizeof(journal));
	snprintf(crash, sizeof(crash), "%s.crash", journal);
	size = records_end(crash);
	assert_true(file_size(crash) > size); /* zeros written ahead */
	/* The clean close folded the journal into the snapshot. */
	assert_int_equal(load_count(&vdevs, &err), 0);
	assert_int_equal(vdevs, 4);

	put_back_crash(journal, file_size(crash));
	assert_int_equal(load_count(&vdevs, &err), 0);
	assert_int_equal(vdevs, 4);
	for (long cut = size - 1; cut > size - 40; cut -= 7) {
		put_back_crash(journal, cut);
		err = (struct siov_err){0};
		assert_int_equal(load_count(&vdevs, &err), 0);
		assert_int_equal(vdevs, 5); /* the delete was torn: vm0 is back */
	}
	/* Bytes of an unfinished batch after the last record: cut, the rest kept. */
	put_back_crash(journal, file_size(crash));
	{
		int fd = open(journal, O_WRONLY);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, "\0\0{\"seq\":99}", 13, size + 100), 13);
		close(fd);
	}
	assert_int_equal(load_count(&vdevs, &err), 0);
	assert_int_equal(vdevs, 4);
	/* Damage in the middle of the journal is corruption, not a torn tail. */
	put_back_crash(journal, file_size(crash));
	{
		int fd = open(journal, O_WRONLY);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, "X", 1, 60), 1);
		close(fd);
	}
	err = (struct siov_err){0};
	assert_int_equal(load_count(&vdevs, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "siovd.journal.0 line 2"));
	assert_int_equal(vdevs, 0);
	unlink(crash);
	snprintf(crash, sizeof(crash), "%s.crash", g_file);
	unlink(crash);
}

/* A journal that is not ours (or from a future version) is refused and left alone. */
static void test_foreign_journal_refused(void **state)
{
	struct siov_rpc_server_opts opts = {.state_dir = g_dir};
	struct siov_rpc_server *srv = NULL;
	struct siov_vdcm *v;
	struct siov_err err = {0};
	char journal[160];
	int fd, vdevs;

	snprintf(journal, sizeof(journal), "%s/siovd.journal.0", g_dir);
	fd = open(journal, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hello world\n", 12), 12);
	close(fd);
	assert_int_equal(load_count(&vdevs, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "is not a siov journal"));
	vnew(&v);
	opts.vdcm = v;
	assert_true(siov_rpc_server_create(&opts, &srv) < 0);
	assert_int_equal(file_size(journal), 12);
	siov_vdcm_destroy(v);
}

/* A journal longer than the threshold is folded away in the background. */
static void test_compaction(void **state)
{
	struct siov_vdcm *a;
	struct siov_rpc_server *srv = start_ram0(4, &a);
	struct siov_err err = {0};
	int vdevs;

	for (int i = 0; i < 40; i++) {
		create_small(srv, i);
		/* What is acknowledged can be read back at any moment, mid-compaction too. */
		if (i % 10 == 9) {
			assert_int_equal(load_count(&vdevs, &err), 0);
			assert_int_equal(vdevs, i + 1);
		}
	}
	/* A few journals at most: the old ones were folded into the snapshot. */
	assert_true(dir_entries() <= 4);
	siov_rpc_server_destroy(srv);
	siov_vdcm_destroy(a);
	assert_int_equal(dir_entries(), 1);
	assert_int_equal(load_count(&vdevs, &err), 0);
	assert_int_equal(vdevs, 40);
}

/* Two servers on one state dir would interleave their journals: the second is refused. */
static void test_dir_locked(void **state)
{
	struct siov_vdcm *a;
	struct siov_rpc_server_opts opts = {.state_dir = g_dir};
	struct siov_rpc_server *s1, *s2 = NULL;

	vnew(&a);
	opts.vdcm = a;
	assert_int_equal(siov_rpc_server_create(&opts, &s1), 0);
	assert_int_equal(siov_rpc_server_create(&opts, &s2), -EBUSY);
	siov_rpc_server_destroy(s1);
	siov_vdcm_destroy(a);
}

static void test_missing_file(void **state)
{
	struct siov_vdcm *v;
	struct siov_err err = {0};

	vnew(&v);
	assert_int_equal(siov_state_load(v, g_dir, &err), 0);
	assert_int_equal(probe_backends(v), 0);
	siov_vdcm_destroy(v);
}

static void expect_refused(const char *text, const char *msg)
{
	struct siov_vdcm *v;
	struct siov_err err = {0};
	int rc;

	write_state(text);
	vnew(&v);
	rc = siov_state_load(v, g_dir, &err);
	if (rc != -EINVAL || !strstr(err.msg, msg))
		fail_msg("'%s': rc %d, message '%s' (expected '%s')", text, rc, err.msg, msg);
	assert_int_equal(probe_backends(v), 0);
	assert_int_equal(probe_vdevs(v), 0);
	siov_vdcm_destroy(v);
}

#define B_OK "{\"name\":\"b\",\"type\":\"ram\",\"size\":4096}"

static void test_corrupt_refused(void **state)
{
	expect_refused("", "is not a JSON object");
	expect_refused("{\"version\":1,\"backends\":[" B_OK, "is not a JSON object");
	expect_refused("[]", "is not a JSON object");
	expect_refused("{\"version\":1} {}", "is not a JSON object");
	expect_refused("{}", "'version' must be 1");
	expect_refused("{\"version\":2}", "'version' must be 1");
	expect_refused("{\"version\":\"1\"}", "'version' must be 1");
	expect_refused("{\"version\":1,\"extra\":0}", "unknown member 'extra'");
	expect_refused("{\"version\":1,\"backends\":{}}", "'backends' must be an array");
	expect_refused("{\"version\":1,\"vdevs\":\"x\"}", "'vdevs' must be an array");
	expect_refused("{\"version\":1,\"backends\":[" B_OK ",7]}",
		       "backends[1]: params must be an object");
	expect_refused("{\"version\":1,\"backends\":[{\"name\":\"b\",\"type\":\"ram\","
		       "\"size\":\"big\"}]}",
		       "backends[0]: parameter 'size' must be a number of bytes");
	expect_refused("{\"version\":1,\"backends\":[{\"name\":\"../b\",\"type\":\"ram\","
		       "\"size\":4096}]}",
		       "backends[0]: parameter 'name'");
	expect_refused("{\"version\":1,\"backends\":[" B_OK "],\"vdevs\":[{\"name\":\"v\","
		       "\"backend\":\"b\"}]}",
		       "vdevs[0]: missing parameter 'socket'");
	expect_refused("{\"version\":1,\"backends\":[" B_OK "],\"vdevs\":[{\"name\":\"v\","
		       "\"backend\":\"b\",\"socket\":\"/s\",\"queues\":-1}]}",
		       "vdevs[0]: parameter 'queues' must not be negative");
}

/* Entries the VDCM refuses are skipped and counted; the rest comes up. */
static void test_failed_entries_counted(void **state)
{
	struct siov_vdcm *v;
	struct siov_err err = {0};
	char text[512];

	/* Two entries of one name cannot both be meant: the file is refused. */
	expect_refused("{\"version\":1,\"backends\":[" B_OK "," B_OK "]}",
		       "backends[1]: name missing or repeated");
	snprintf(text, sizeof(text),
		 "{\"version\":1,\"backends\":[" B_OK "],\"vdevs\":["
		 "{\"name\":\"v1\",\"backend\":\"missing\",\"socket\":\"%s/s1\"},"
		 "{\"name\":\"v2\",\"backend\":\"b\",\"socket\":\"%s/s2\"}]}",
		 g_work, g_work);
	write_state(text);
	vnew(&v);
	assert_int_equal(siov_state_load(v, g_dir, &err), 1);
	assert_int_equal(probe_backends(v), 1);
	assert_int_equal(probe_vdevs(v), 1);
	assert_non_null(probe_vdev(v, "v2"));
	siov_vdcm_destroy(v);
}

/* ---- Over a socket: answers sent by the writer after its sync ---- */

/* Whether a journal file of g_dir holds text. */
static bool journal_has(const char *text)
{
	static char text_buf[1 << 16];
	DIR *d = opendir(g_dir);
	struct dirent *e;
	bool found = false;

	assert_non_null(d);
	while (!found && (e = readdir(d))) {
		char path[512];
		FILE *f;
		size_t n;

		if (strncmp(e->d_name, "siovd.journal.", 14))
			continue;
		snprintf(path, sizeof(path), "%s/%s", g_dir, e->d_name);
		f = fopen(path, "r");
		assert_non_null(f);
		n = fread(text_buf, 1, sizeof(text_buf) - 1, f);
		text_buf[n] = '\0';
		fclose(f);
		found = strstr(text_buf, text) != NULL;
	}
	closedir(d);
	return found;
}

static unsigned lines(const char *s, size_t len)
{
	unsigned n = 0;

	for (size_t i = 0; i < len; i++)
		n += s[i] == '\n';
	return n;
}

/* Runs the loop until fd sent want whole lines (answers), returned in g_buf. */
static void read_answers(int fd, unsigned want)
{
	size_t len = 0;

	for (int i = 0; i < 2000 && lines(g_buf, len) < want; i++) {
		ssize_t n;

		siov_loop_run_once(g_loop, 5);
		n = recv(fd, g_buf + len, sizeof(g_buf) - 1 - len, MSG_DONTWAIT);
		if (n > 0)
			len += (size_t)n;
	}
	g_buf[len] = '\0';
	assert_int_equal(lines(g_buf, len), want);
}

static void send_text(int fd, const char *text)
{
	assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
}

/*
 * One client, one call at a time, as an orchestrator: every answer comes
 * once, in order, and only when its record is in the journal; two calls sent
 * together are answered in order; a failing disk answers "not saved".
 */
static void test_socket_answers_durable(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct siov_rpc_server_opts opts = {.loop = g_loop, .state_dir = g_dir};
	struct siov_rpc_server *srv;
	struct siov_vdcm *v;
	char req[256], name[32];
	int fd;

	vnew(&v);
	opts.vdcm = v;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/rpc.sock", g_work);
	opts.socket_path = sa.sun_path;
	assert_int_equal(siov_rpc_server_create(&opts, &srv), 0);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "\"name\":\"n%d\"", i);
		snprintf(req, sizeof(req),
			 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"backend_create\","
			 "\"params\":{%s,\"type\":\"null\",\"size\":4096}}\n",
			 i, name);
		send_text(fd, req);
		read_answers(fd, 1);
		snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":true}\n", i);
		assert_string_equal(g_buf, req);
		assert_true(journal_has(name));
	}
	send_text(fd, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"backend_delete\","
		      "\"params\":{\"name\":\"n0\"}}\n{\"jsonrpc\":\"2.0\",\"id\":\"b\","
		      "\"method\":\"backend_delete\",\"params\":{\"name\":\"n1\"}}\n");
	read_answers(fd, 2);
	assert_string_equal(g_buf, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":true}\n"
				   "{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"result\":true}\n");
	assert_true(journal_has("\"op\":\"del\",\"kind\":\"backend\",\"name\":\"n1\""));
	assert_false(journal_has("\"op\":\"del\",\"kind\":\"backend\",\"name\":\"n2\""));
	siov_state_inject_write_error(srv->state, -EIO);
	send_text(fd, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"backend_create\","
		      "\"params\":{\"name\":\"lost\",\"type\":\"null\",\"size\":4096}}\n");
	read_answers(fd, 1);
	assert_non_null(strstr(g_buf, "\"id\":7"));
	assert_non_null(strstr(g_buf, "done, but the state could not be saved"));
	close(fd);
	siov_rpc_server_destroy(srv);
	siov_vdcm_destroy(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_socket_answers_durable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_save_over_leftovers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_networks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_net_port_methods, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failed_entries_counted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_journal_recovery, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_foreign_journal_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dir_locked, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
