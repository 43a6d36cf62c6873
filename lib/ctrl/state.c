/*
 * The persisted configuration as a snapshot plus a journal.
 *
 *   DIR/siovd.json          {"version": 1, "generation": G, "seq": S, "backends": [...],
 *                            "groups": [...], "networks": [...], "vdevs": [...]}
 *   DIR/siovd.journal.G     one line per record, "CRC32C-HEX JSON\n"; the first
 *                           line is the header {"siov_journal": 1, "generation": G}
 *
 * The snapshot holds every change up to sequence number S; journal G, G+1, ...
 * hold the changes after it, each record {"seq", "op", "kind", "name", "conf"}
 * with seq one more than the one before.  A change costs one small append:
 * the writer thread takes every record appended since its last write, writes
 * them in one go and fdatasyncs once (group commit), and only then are their
 * calls answered.  When a journal holds many records the writer starts the
 * next generation and a compaction thread folds snapshot + the finished
 * journals into a new snapshot (temporary file, fsync, rename, fsync of the
 * directory) and removes them; appends never wait for it.
 *
 * When the writer may start a sync is decided on the control thread, which
 * knows who is about to send a change: a client that was just answered one
 * often sends the next at once.  When such clients usually come back within
 * half a sync, the writer is held back until they did (or a timer says they
 * are late); otherwise it syncs what it has as soon as it is idle.  Without
 * that, N clients one call at a time on a slow disk split into alternating
 * small batches (the ones answered last miss the sync that starts at once);
 * with it always, clients slower than the disk (a busy CPU) would idle it.
 *
 * Recovery reads the snapshot and the journals in order.  The last record of
 * the last journal may be torn (a crash while it was written: it was never
 * acknowledged) and is cut off; anything else malformed, foreign, out of
 * sequence or missing refuses the whole state dir with a message naming the
 * file and line, and siovd writes nothing there: it must not come up quietly
 * missing half its devices, nor overwrite what it cannot read.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "siov_internal/log.h"
#include "siov_internal/loop.h"
#include "siov_internal/state.h"
#include "rpc_internal.h"

#define STATE_FILE	"siovd.json"
#define STATE_TMP	".siovd.json.tmp"
#define JOURNAL_PREFIX	"siovd.journal."
#define STATE_VERSION	1
#define JOURNAL_VERSION 1
/* Far more than tens of thousands of entries need; a bigger file is not ours. */
#define STATE_MAX_SIZE	   (256u << 20)
#define COMPACT_RECORDS	   8192
#define STATE_MAX_JOURNALS 64

/* ---- The kinds of object the state knows ---- */

/*
 * One row per kind, in the order they are recreated: an object may only
 * depend on kinds above it (a VDEV on its backend and group).  To persist a
 * new kind: add a row, and call siov_rpc_record() from its methods.
 */
struct state_kind {
	const char *kind; /* in records */
	const char *key;  /* the snapshot's array */
	const char *what; /* in messages */
	size_t conf_size;
	int (*from_json)(struct json_object *o, void *conf, struct siov_err *err);
	int (*create)(struct siov_vdcm *vdcm, const void *conf, struct siov_err *err);
	/* NULL, or 0/1: objects of pass 1 are made after all of pass 0 of their kind. */
	unsigned (*pass)(const void *conf);
	/* The member of conf that names the object: NULL means "name". */
	const char *key_field;
};

static int backend_from_json(struct json_object *o, void *conf, struct siov_err *err)
{
	return siov_backend_conf_from_json(o, conf, err);
}

static int backend_create(struct siov_vdcm *vdcm, const void *conf, struct siov_err *err)
{
	return siov_vdcm_backend_create(vdcm, conf, err);
}

/* Mirrors after every other backend: a member may be younger than its mirror. */
static unsigned backend_pass(const void *conf)
{
	return ((const struct siov_backend_conf *)conf)->type == SIOV_BACKEND_MIRROR;
}

static int group_from_json(struct json_object *o, void *conf, struct siov_err *err)
{
	return siov_group_conf_from_json(o, conf, NULL, err);
}

static int group_create(struct siov_vdcm *vdcm, const void *conf, struct siov_err *err)
{
	return siov_vdcm_group_create(vdcm, conf, err);
}

static int vdev_from_json(struct json_object *o, void *conf, struct siov_err *err)
{
	return siov_vdev_conf_from_json(o, conf, err);
}

static int vdev_create(struct siov_vdcm *vdcm, const void *conf, struct siov_err *err)
{
	return siov_vdcm_vdev_create(vdcm, conf, err);
}

static int network_from_json(struct json_object *o, void *conf, struct siov_err *err)
{
	return siov_network_conf_from_json(o, conf, err);
}

static int network_create(struct siov_vdcm *vdcm, const void *conf, struct siov_err *err)
{
	return siov_vdcm_network_create(vdcm, conf, err);
}

static int export_from_json(struct json_object *o, void *conf, struct siov_err *err)
{
	return siov_export_conf_from_json(o, conf, err);
}

static int export_create(struct siov_vdcm *vdcm, const void *conf, struct siov_err *err)
{
	return siov_vdcm_export_create(vdcm, conf, err);
}

static const struct state_kind kinds[] = {
    {"backend", "backends", "backend", sizeof(struct siov_backend_conf), backend_from_json,
     backend_create, backend_pass, NULL},
    {"group", "groups", "group", sizeof(struct siov_group_conf), group_from_json, group_create,
     NULL, NULL},
    {"network", "networks", "network", sizeof(struct siov_network_conf), network_from_json,
     network_create, NULL, NULL},
    {"vdev", "vdevs", "VDEV", sizeof(struct siov_vdev_conf), vdev_from_json, vdev_create, NULL,
     NULL},
    /* An export serves a VDEV and is named after it. */
    {"export", "exports", "export", sizeof(struct siov_export_conf), export_from_json,
     export_create, NULL, "vdev"},
};
#define NKINDS SIOV_ARRAY_SIZE(kinds)

static const struct state_kind *kind_find(const char *kind)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (strcmp(kinds[i].kind, kind) == 0)
			return &kinds[i];
	return NULL;
}

static const char *kind_key_field(const struct state_kind *k)
{
	return k->key_field ? k->key_field : "name";
}

static const struct state_kind *kind_by_key(const char *key)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (strcmp(kinds[i].key, key) == 0)
			return &kinds[i];
	return NULL;
}

/* Checks conf the way the kind's create method would (the result is dropped). */
static int kind_check(const struct state_kind *k, struct json_object *conf, struct siov_err *err)
{
	void *tmp = malloc(k->conf_size);
	int rc;

	if (!tmp)
		return siov_err_set(err, -ENOMEM, "out of memory");
	rc = k->from_json(conf, tmp, err) ? -EINVAL : 0;
	free(tmp);
	return rc;
}

/* ---- CRC-32C (Castagnoli), for torn and damaged records ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32c(const char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	pthread_once(&crc_once, crc_init);
	while (n--)
		c = crc_table[(c ^ (uint8_t)*p++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

/* ---- The model: {kind: {name: conf}} in creation order ---- */

struct model {
	struct json_object *kinds[NKINDS];
	uint64_t generation; /* of the snapshot */
	uint64_t seq;	     /* of the last change applied */
	uint64_t entries;
};

static int model_init(struct model *m, struct siov_err *err)
{
	*m = (struct model){0};
	for (size_t i = 0; i < NKINDS; i++)
		if (!(m->kinds[i] = json_object_new_object()))
			return siov_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

static void model_free(struct model *m)
{
	for (size_t i = 0; i < NKINDS; i++)
		json_object_put(m->kinds[i]);
	*m = (struct model){0};
}

static uint64_t model_count(const struct model *m)
{
	uint64_t n = 0;

	for (size_t i = 0; i < NKINDS; i++)
		n += (uint64_t)json_object_object_length(m->kinds[i]);
	return n;
}

/* ---- Files ---- */

/* Writes all of buf at off, or at the file position if off < 0. */
static int write_at(int fd, const char *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = off < 0 ? write(fd, buf, len) : pwrite(fd, buf, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
		off = off < 0 ? off : off + n;
	}
	return 0;
}

/* Reads name (relative to dirfd) whole; *text is NULL (and 0 returned) if it does not exist. */
static int read_file(int dirfd, const char *name, char **text, size_t *len, struct siov_err *err)
{
	struct stat st;
	ssize_t n;
	int fd, rc = 0;

	*text = NULL;
	*len = 0;
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT
			   ? 0
			   : siov_err_set(err, -errno, "cannot open %s: %s", name, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)STATE_MAX_SIZE) {
		rc = siov_err_set(err, -EINVAL, "%s: not a regular file of at most %u bytes", name,
				  STATE_MAX_SIZE);
		goto out;
	}
	*text = malloc((size_t)st.st_size + 1);
	if (!*text) {
		rc = siov_err_set(err, -ENOMEM, "out of memory reading %s", name);
		goto out;
	}
	n = pread(fd, *text, (size_t)st.st_size, 0);
	if (n != st.st_size) {
		rc = siov_err_set(err, n < 0 ? -errno : -EIO, "cannot read %s", name);
		free(*text);
		*text = NULL;
		goto out;
	}
	(*text)[n] = '\0';
	*len = (size_t)n;
out:
	close(fd);
	return rc;
}

/* Parses text[0..len) as exactly one JSON object (NULL if it is not one). */
static struct json_object *parse_object(const char *text, size_t len, const char **why)
{
	struct json_tokener *tok = json_tokener_new();
	enum json_tokener_error jerr;
	struct json_object *o;

	*why = "out of memory";
	if (!tok)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_success && json_tokener_get_parse_end(tok) != len)
		jerr = json_tokener_error_parse_unexpected;
	json_tokener_free(tok);
	if (jerr == json_tokener_continue)
		jerr = json_tokener_error_parse_eof;
	if (jerr != json_tokener_success || !json_object_is_type(o, json_type_object)) {
		*why = jerr != json_tokener_success ? json_tokener_error_desc(jerr) : "wrong type";
		json_object_put(o);
		return NULL;
	}
	return o;
}

static bool get_u64(struct json_object *o, const char *key, uint64_t *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 0)
		return false;
	*out = (uint64_t)json_object_get_int64(v);
	return true;
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* ---- Reading the snapshot ---- */

static int snap_check_root(struct json_object *root, struct model *m, struct siov_err *err)
{
	struct json_object *ver;

	json_object_object_foreach(root, key, val)
	{
		(void)val;
		if (strcmp(key, "version") && strcmp(key, "generation") && strcmp(key, "seq") &&
		    !kind_by_key(key))
			return siov_err_set(err, -EINVAL, "%s: unknown member '%.64s'", STATE_FILE,
					    key);
	}
	if (!json_object_object_get_ex(root, "version", &ver) ||
	    !json_object_is_type(ver, json_type_int) || json_object_get_int64(ver) != STATE_VERSION)
		return siov_err_set(err, -EINVAL, "%s: 'version' must be %d", STATE_FILE,
				    STATE_VERSION);
	/* Files written before the journal have neither: generation 0, nothing applied. */
	if ((json_object_object_get_ex(root, "generation", NULL) &&
	     !get_u64(root, "generation", &m->generation)) ||
	    (json_object_object_get_ex(root, "seq", NULL) && !get_u64(root, "seq", &m->seq)))
		return siov_err_set(err, -EINVAL,
				    "%s: 'generation' and 'seq' must be integers >= 0", STATE_FILE);
	return 0;
}

static int snap_add(const struct state_kind *k, struct json_object *arr, struct json_object *dst,
		    struct siov_err *err)
{
	size_t n = json_object_array_length(arr);
	struct siov_err e = {0};

	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		const char *name;

		if (kind_check(k, o, &e) < 0)
			return siov_err_set(err, -EINVAL, "%s: %s[%zu]: %s", STATE_FILE, k->key, i,
					    e.msg);
		name = get_str(o, kind_key_field(k));
		if (!name || json_object_object_get_ex(dst, name, NULL))
			return siov_err_set(err, -EINVAL, "%s: %s[%zu]: name missing or repeated",
					    STATE_FILE, k->key, i);
		json_object_object_add(dst, name, json_object_get(o));
	}
	return 0;
}

static int read_snapshot(int dirfd, struct model *m, bool *found, struct siov_err *err)
{
	struct json_object *root, *arr;
	const char *why;
	size_t len;
	char *text;
	int rc;

	rc = read_file(dirfd, STATE_FILE, &text, &len, err);
	*found = text != NULL;
	if (rc < 0 || !text)
		return rc;
	root = parse_object(text, len, &why);
	free(text);
	if (!root)
		return siov_err_set(err, -EINVAL, "%s is not a JSON object: %s", STATE_FILE, why);
	rc = snap_check_root(root, m, err);
	for (size_t i = 0; rc == 0 && i < NKINDS; i++) {
		if (!json_object_object_get_ex(root, kinds[i].key, &arr))
			continue; /* an empty configuration may leave it out */
		if (!json_object_is_type(arr, json_type_array))
			rc = siov_err_set(err, -EINVAL, "%s: '%s' must be an array", STATE_FILE,
					  kinds[i].key);
		else
			rc = snap_add(&kinds[i], arr, m->kinds[i], err);
	}
	json_object_put(root);
	return rc;
}

/* ---- Reading the journals ---- */

/* One record line, without its '\n': "CRC32C-HEX JSON". */
static struct json_object *parse_line(const char *line, size_t len, const char **why)
{
	char hex[9];
	char *end;
	unsigned long crc;

	*why = "not 'CRC JSON'";
	if (len < 10 || line[8] != ' ')
		return NULL;
	memcpy(hex, line, 8);
	hex[8] = '\0';
	crc = strtoul(hex, &end, 16);
	if (*end != '\0')
		return NULL;
	*why = "checksum mismatch";
	if (crc32c(line + 9, len - 9) != (uint32_t)crc)
		return NULL;
	return parse_object(line + 9, len - 9, why);
}

static int apply_record(struct model *m, struct json_object *rec, const char **why,
			struct siov_err *cerr)
{
	const char *op = get_str(rec, "op"), *kind = get_str(rec, "kind");
	const char *name = get_str(rec, "name");
	const struct state_kind *k = kind ? kind_find(kind) : NULL;
	struct json_object *conf = NULL, *dst;
	uint64_t seq;

	*why = "'seq' is not the next sequence number";
	if (!get_u64(rec, "seq", &seq) || seq != m->seq + 1)
		return -EINVAL;
	*why = "unknown 'kind' (a newer siovd's journal?)";
	if (!k)
		return -EINVAL;
	*why = "'op' must be \"put\" or \"del\" and 'name' a string";
	if (!op || !name || (strcmp(op, "put") && strcmp(op, "del")))
		return -EINVAL;
	dst = m->kinds[k - kinds];
	if (op[0] == 'd') {
		json_object_object_del(dst, name);
	} else {
		*why = cerr->msg;
		if (!json_object_object_get_ex(rec, "conf", &conf) || kind_check(k, conf, cerr) < 0)
			return -EINVAL;
		*why = "'conf' names another object";
		if (!get_str(conf, kind_key_field(k)) ||
		    strcmp(get_str(conf, kind_key_field(k)), name))
			return -EINVAL;
		json_object_object_add(dst, name, json_object_get(conf));
	}
	m->seq = seq;
	return 0;
}

static int check_header(const char *file, struct json_object *h, uint64_t gen, struct siov_err *err)
{
	uint64_t v, g;

	if (!h || !get_u64(h, "siov_journal", &v) || !get_u64(h, "generation", &g))
		return siov_err_set(err, -EINVAL, "%s is not a siov journal (bad first line)",
				    file);
	if (v != JOURNAL_VERSION || g != gen)
		return siov_err_set(err, -EINVAL,
				    "%s: journal version %" PRIu64 " generation %" PRIu64
				    ", expected version %d generation %" PRIu64,
				    file, v, g, JOURNAL_VERSION, gen);
	return 0;
}

static bool all_zero(const char *p, size_t n)
{
	while (n && !*p)
		p++, n--;
	return n == 0;
}

/*
 * Applies journal gen (text[0..len)) to m.  A journal ends where its records
 * do: the rest of the file is zeros the writer put there ahead of time (see
 * extend_journal()).  In the last journal, a bad final record, or anything
 * but zeros after the end, is a batch torn by a crash (never acknowledged):
 * *good is where the good part ends.  Returns the records applied.
 */
static int64_t replay_journal(const char *file, const char *text, size_t len, uint64_t gen,
			      bool last, struct model *m, size_t *good, struct siov_err *err)
{
	struct siov_err cerr = {0};
	size_t off = 0, lineno = 0;
	int64_t n = 0;
	int rc;

	*good = 0;
	while (off < len) {
		const char *nl, *why = NULL;

		if (text[off] == '\0' && lineno > 0) {
			if (all_zero(text + off, len - off))
				return n;
			if (!last)
				return siov_err_set(err, -EINVAL, "%s: data after its end", file);
			SIOV_WARN("state: %s: an unfinished write after change #%" PRIu64
				  " (never acknowledged); cut off",
				  file, m->seq);
			return n;
		}
		nl = memchr(text + off, '\n', len - off);
		size_t end = nl ? (size_t)(nl - text) : len;
		struct json_object *rec = nl ? parse_line(text + off, end - off, &why) : NULL;

		lineno++;
		if (!nl)
			why = "incomplete line";
		if (lineno == 1) {
			rc = check_header(file, rec, gen, err);
			json_object_put(rec);
			if (rc < 0)
				return rc;
		} else if (!rec || apply_record(m, rec, &why, &cerr) < 0) {
			json_object_put(rec);
			if (last && (!nl || all_zero(text + end + 1, len - end - 1))) {
				SIOV_WARN("state: %s line %zu: %s: a record torn by a crash, never "
					  "acknowledged; cut off",
					  file, lineno, why);
				return n;
			}
			return siov_err_set(err, -EINVAL, "%s line %zu: %s", file, lineno, why);
		} else {
			json_object_put(rec);
			n++;
		}
		off = end + 1;
		*good = off;
	}
	if (lineno == 0)
		return siov_err_set(err, -EINVAL, "%s is empty (not a siov journal)", file);
	return n;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The generations of the journal files in the dir, sorted. */
static int list_journals(int dirfd, uint64_t *gens, size_t *n, struct siov_err *err)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	*n = 0;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return siov_err_set(err, -errno, "cannot list the state dir: %s", strerror(errno));
	}
	rewinddir(d);
	while ((e = readdir(d))) {
		const char *p = e->d_name + strlen(JOURNAL_PREFIX);
		char *end;
		unsigned long long g;

		if (strncmp(e->d_name, JOURNAL_PREFIX, strlen(JOURNAL_PREFIX)) || *p < '0' ||
		    *p > '9')
			continue;
		g = strtoull(p, &end, 10);
		if (*end)
			continue;
		if (*n == STATE_MAX_JOURNALS) {
			closedir(d);
			return siov_err_set(err, -EINVAL, "more than %d journal files",
					    STATE_MAX_JOURNALS);
		}
		gens[(*n)++] = g;
	}
	closedir(d);
	qsort(gens, *n, sizeof(*gens), cmp_u64);
	return 0;
}

struct recovery {
	struct model m;
	bool snapshot_found;
	uint64_t last_gen;		    /* of the journal to append to (m.generation if none) */
	bool have_journal;		    /* journal last_gen exists */
	size_t last_good;		    /* bytes of it that are good */
	size_t last_size;		    /* bytes it has */
	uint64_t last_recs;		    /* records in it */
	uint64_t stale[STATE_MAX_JOURNALS]; /* journals the snapshot already holds */
	size_t nstale;
};

static int replay_one(int dirfd, uint64_t gen, bool last, struct recovery *r, struct siov_err *err)
{
	char file[64];
	size_t len;
	char *text;
	int64_t n;
	int rc;

	snprintf(file, sizeof(file), JOURNAL_PREFIX "%" PRIu64, gen);
	rc = read_file(dirfd, file, &text, &len, err);
	if (rc < 0)
		return rc;
	if (!text)
		return siov_err_set(err, -ENOENT, "%s vanished", file);
	n = replay_journal(file, text, len, gen, last, &r->m, &r->last_good, err);
	free(text);
	if (n < 0)
		return (int)n;
	r->have_journal = true;
	r->last_gen = gen;
	r->last_size = len;
	r->last_recs = (uint64_t)n;
	return 0;
}

/* Snapshot + journals below upto (UINT64_MAX: all of them). */
static int recover(int dirfd, uint64_t upto, struct recovery *r, struct siov_err *err)
{
	uint64_t gens[STATE_MAX_JOURNALS], want;
	size_t n, i, last;
	int rc;

	*r = (struct recovery){0};
	if ((rc = model_init(&r->m, err)) < 0 ||
	    (rc = read_snapshot(dirfd, &r->m, &r->snapshot_found, err)) < 0 ||
	    (rc = list_journals(dirfd, gens, &n, err)) < 0)
		return rc;
	r->last_gen = r->m.generation;
	want = r->m.generation;
	for (i = 0; i < n && gens[i] < want; i++)
		r->stale[r->nstale++] = gens[i];
	for (last = n; last > i && gens[last - 1] >= upto; last--)
		;
	for (; i < last; i++, want++) {
		if (gens[i] != want)
			return siov_err_set(err, -EINVAL,
					    "journal %s%" PRIu64 " is missing (found %" PRIu64 ")",
					    JOURNAL_PREFIX, want, gens[i]);
		rc = replay_one(dirfd, gens[i], i + 1 == n, r, err);
		if (rc < 0)
			return rc;
	}
	r->m.entries = model_count(&r->m);
	return 0;
}

/* ---- Writing a snapshot ---- */

static int emit(int fd, const char *s)
{
	return write_at(fd, s, strlen(s), -1);
}

/* One entry per line, so that a person can read, grep and diff it. */
static int write_snapshot_body(int fd, const struct model *m)
{
	char head[128];
	int rc;

	snprintf(head, sizeof(head),
		 "{\"version\": %d, \"generation\": %" PRIu64 ", \"seq\": %" PRIu64, STATE_VERSION,
		 m->generation, m->seq);
	rc = emit(fd, head);
	for (size_t i = 0; rc == 0 && i < NKINDS; i++) {
		bool first = true;
		rc = emit(fd, ",\n\"") ?: emit(fd, kinds[i].key) ?: emit(fd, "\": [");
		json_object_object_foreach(m->kinds[i], name, conf)
		{
			(void)name;
			if (rc == 0)
				rc = emit(fd, first ? "\n  " : ",\n  ")
					 ?: emit(fd, json_object_to_json_string_ext(
							 conf, JSON_C_TO_STRING_PLAIN |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
			first = false;
		}
		if (rc == 0)
			rc = emit(fd, first ? "]" : "\n]");
	}
	return rc ?: emit(fd, "\n}\n");
}

static int sync_dir(int dirfd, struct siov_err *err)
{
	if (fsync(dirfd) < 0)
		return siov_err_set(err, -errno, "cannot sync the state dir: %s", strerror(errno));
	return 0;
}

/* Temporary file, fsync, rename over the old one, fsync of the directory. */
static int write_snapshot(int dirfd, const struct model *m, struct siov_err *err)
{
	int fd, rc;

	fd = openat(dirfd, STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return siov_err_set(err, -errno, "cannot create %s: %s", STATE_TMP,
				    strerror(errno));
	rc = write_snapshot_body(fd, m);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(dirfd, STATE_TMP, dirfd, STATE_FILE) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(dirfd, STATE_TMP, 0);
		return siov_err_set(err, rc, "cannot write %s: %s", STATE_FILE, strerror(-rc));
	}
	return sync_dir(dirfd, err);
}

static void unlink_journal(int dirfd, uint64_t gen)
{
	char file[64];

	snprintf(file, sizeof(file), JOURNAL_PREFIX "%" PRIu64, gen);
	if (unlinkat(dirfd, file, 0) < 0 && errno != ENOENT)
		SIOV_WARN("state: cannot remove %s: %s", file, strerror(errno));
}

/*
 * Folds the snapshot and every journal below upto into a snapshot of
 * generation upto, then removes those journals.  Runs on the compaction
 * thread (or at close), reading only files no one appends to any more.
 */
static int compact(int dirfd, uint64_t upto, uint64_t *entries, struct siov_err *err)
{
	struct recovery r;
	uint64_t from;
	int rc = recover(dirfd, upto, &r, err);

	if (rc == 0) {
		from = r.m.generation;
		r.m.generation = upto;
		rc = write_snapshot(dirfd, &r.m, err);
		for (uint64_t g = from; rc == 0 && g < upto; g++)
			unlink_journal(dirfd, g);
		*entries = r.m.entries;
	}
	model_free(&r.m);
	return rc;
}

/* ---- The state object ---- */

struct siov_state {
	int dirfd;
	struct siov_loop *loop;
	void (*durable_cb)(void *arg);
	void *cb_arg;
	struct siov_watch *watch;
	int efd;
	bool readonly;
	uint64_t compact_records;
	struct model boot; /* what recovery found, until restored */

	pthread_t writer;
	bool writer_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* the writer waits for records it may take */
	pthread_cond_t cv_done; /* siov_state_wait waits for progress */
	char *buf;		/* records not yet taken by the writer (mu) */
	size_t len, cap;	/* (mu) */
	uint64_t buf_last;	/* seq of the last record in buf (mu) */
	bool stop;		/* (mu) */
	bool go;		/* (mu) the writer may take buf (always, without a loop) */
	bool writing;		/* (mu) a batch is being written */
	unsigned waiters;	/* (mu) threads in siov_state_wait */
	struct siov_state_reply *replies, **replies_tail; /* (mu) in seq order */

	/* Group commit (control thread): changes announced by siov_state_expect, ... */
	unsigned expected;
	unsigned holding;      /* ... and requests being handled (siov_state_hold) */
	uint64_t epoch_ns;     /* tokens (expect times) from before this no longer count */
	uint64_t turn_ewma_ns; /* how long expected clients take to send */
	int tfd;	       /* ends a wait for expected changes */
	struct siov_watch *twatch;
	bool timer_armed;
	_Atomic uint64_t sync_ewma_ns; /* how long a write + fdatasync takes lately */
	uint64_t appended;	       /* control thread only */
	_Atomic uint64_t durable;
	_Atomic uint64_t failed_from; /* 0: the journal is fine */
	char failed_msg[200];	      /* set before failed_from */
	int failed_rc;

	/* The writer's own. */
	int jfd;
	uint64_t gen;
	off_t jsize;  /* where the next record goes */
	off_t jalloc; /* bytes written so far, zeros past jsize */
	uint64_t jrecords;
	uint64_t snap_entries;
	pthread_t compactor;
	bool compacting;
	_Atomic bool compact_done;
	uint64_t compact_upto, compact_entries;

	_Atomic int inject_rc; /* tests: the next writes fail with this */
	_Atomic uint64_t st_records, st_batches, st_compactions, st_sync_ns;
};

static int open_journal(struct siov_state *st, uint64_t gen, struct siov_err *err)
{
	char file[64], line[128], json[96];
	int fd, rc;

	snprintf(file, sizeof(file), JOURNAL_PREFIX "%" PRIu64, gen);
	fd = openat(st->dirfd, file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return siov_err_set(err, -errno, "cannot create %s: %s", file, strerror(errno));
	snprintf(json, sizeof(json), "{\"siov_journal\":%d,\"generation\":%" PRIu64 "}",
		 JOURNAL_VERSION, gen);
	snprintf(line, sizeof(line), "%08x %s\n", crc32c(json, strlen(json)), json);
	rc = write_at(fd, line, strlen(line), -1);
	/* The file and its name must be on disk before a record in it is acknowledged. */
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	if (rc == 0)
		rc = sync_dir(st->dirfd, err);
	if (rc < 0) {
		close(fd);
		unlinkat(st->dirfd, file, 0);
		return err->msg[0] ? rc : siov_err_set(err, rc, "cannot write %s", file);
	}
	st->jfd = fd;
	st->gen = gen;
	st->jsize = st->jalloc = (off_t)strlen(line);
	st->jrecords = 0;
	return 0;
}

static void *compactor_main(void *arg)
{
	struct siov_state *st = arg;
	struct siov_err err = {0};
	uint64_t t0;

	/*
	 * Compaction is never urgent (the journal only grows meanwhile) and
	 * costs a parse of everything: it yields the CPU to the control thread
	 * and the writer.  Linux takes a thread id for a thread's nice value.
	 */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) < 0)
		SIOV_DEBUG("state: cannot lower the compaction thread's priority: %s",
			   strerror(errno));
	t0 = siov_now_ns();

	if (compact(st->dirfd, st->compact_upto, &st->compact_entries, &err) < 0)
		SIOV_ERR("state: compaction failed (the journal is kept): %s", err.msg);
	else
		SIOV_DEBUG("state: compacted into generation %" PRIu64 " (%" PRIu64
			   " entries) in %.1f ms",
			   st->compact_upto, st->compact_entries, (siov_now_ns() - t0) / 1e6);
	atomic_store(&st->compact_done, true);
	return NULL;
}

static void reap_compactor(struct siov_state *st)
{
	if (!st->compacting)
		return;
	pthread_join(st->compactor, NULL);
	st->compacting = false;
	atomic_store(&st->compact_done, false);
	st->snap_entries = st->compact_entries;
	atomic_fetch_add(&st->st_compactions, 1);
}

/* A long journal: records go to the next generation, the old one is folded away. */
static void maybe_rotate(struct siov_state *st)
{
	struct siov_err err = {0};
	int oldfd = st->jfd;

	if (st->compacting && atomic_load(&st->compact_done))
		reap_compactor(st);
	if (st->compacting || st->jrecords < st->compact_records || st->jrecords < st->snap_entries)
		return;
	if (open_journal(st, st->gen + 1, &err) < 0) {
		SIOV_WARN("state: cannot start a new journal (staying on this one): %s", err.msg);
		return;
	}
	close(oldfd);
	st->compact_upto = st->gen;
	if (pthread_create(&st->compactor, NULL, compactor_main, st) == 0) {
		st->compacting = true;
		pthread_setname_np(st->compactor, "siov-compact");
	}
}

static void journal_failed(struct siov_state *st, uint64_t first, int rc, const char *msg)
{
	st->failed_rc = rc;
	snprintf(st->failed_msg, sizeof(st->failed_msg), "%s", msg);
	atomic_store(&st->failed_from, first);
	SIOV_ERR("state: the journal failed; changes from #%" PRIu64
		 " on are not saved and later ones are refused until siovd restarts: %s",
		 first, msg);
}

/*
 * Zeros ahead of the records, written (not fallocated: an unwritten extent
 * turns into a metadata change when it is first written) and made durable
 * with the next batch.  A record then overwrites zeros and the file's size
 * does not change, so its fdatasync flushes data only, not the inode and the
 * file system's journal: about a third cheaper per change on ext4, and much
 * more when other I/O competes for the file system's journal.
 */
#define JOURNAL_CHUNK (1u << 20)

static int extend_journal(struct siov_state *st, size_t need)
{
	static const char zeros[65536];
	off_t want = st->jsize + (off_t)need + JOURNAL_CHUNK;

	want -= want % JOURNAL_CHUNK;
	while (st->jalloc < want) {
		size_t n = SIOV_MIN(sizeof(zeros), (size_t)(want - st->jalloc));
		ssize_t w = pwrite(st->jfd, zeros, n, st->jalloc);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		st->jalloc += w;
	}
	return 0;
}

static int write_batch(struct siov_state *st, const char *buf, size_t len)
{
	struct siov_err err = {0};
	int rc;

	if ((rc = atomic_load(&st->inject_rc)) < 0)
		return rc;
	if (st->jfd < 0 && (rc = open_journal(st, st->gen, &err)) < 0)
		return rc;
	if (st->jsize + (off_t)len > st->jalloc && (rc = extend_journal(st, len)) < 0)
		return rc;
	rc = write_at(st->jfd, buf, len, st->jsize);
	if (rc == 0 && fdatasync(st->jfd) < 0)
		rc = -errno;
	if (rc == 0)
		st->jsize += (off_t)len;
	return rc;
}

/* The batch is decided: wake whoever waits for it, and the loop. */
static void notify(struct siov_state *st)
{
	uint64_t one = 1;

	pthread_mutex_lock(&st->mu);
	st->writing = false;
	if (st->waiters)
		pthread_cond_broadcast(&st->cv_done);
	pthread_mutex_unlock(&st->mu);
	if (st->efd >= 0)
		(void)!write(st->efd, &one, sizeof(one));
}

static void note_sync_time(struct siov_state *st, uint64_t ns)
{
	uint64_t e = atomic_load(&st->sync_ewma_ns);

	atomic_store(&st->sync_ewma_ns, e ? (7 * e + ns) / 8 : ns);
	atomic_fetch_add(&st->st_sync_ns, ns);
}

/* ---- Answers the writer sends ---- */

struct siov_state_reply {
	struct siov_state_reply *next;
	uint64_t seq;
	int fd; /* the writer's own duplicate of the connection */
	_Atomic int refs;
	_Atomic ssize_t sent; /* -EAGAIN until the writer is done with it */
	size_t len;
	char text[];
};

void siov_state_reply_put(struct siov_state_reply *r)
{
	if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
		if (r->fd >= 0)
			close(r->fd);
		free(r);
	}
}

static void reply_finish(struct siov_state_reply *r, bool send_it)
{
	ssize_t n = 0;

	if (send_it) {
		n = send(r->fd, r->text, r->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
			n = 0; /* the control thread sends it, or finds the peer gone */
	}
	close(r->fd);
	r->fd = -1;
	atomic_store(&r->sent, n);
	siov_state_reply_put(r);
}

/* After a batch up to last (ok: durable): the answers it decides, sent at once if ok. */
static void send_replies(struct siov_state *st, uint64_t last, bool ok)
{
	struct siov_state_reply *list = NULL, **tail = &list, *r;

	pthread_mutex_lock(&st->mu);
	while ((r = st->replies) && r->seq <= last) {
		st->replies = r->next;
		*tail = r;
		tail = &r->next;
	}
	if (!st->replies)
		st->replies_tail = &st->replies;
	*tail = NULL;
	pthread_mutex_unlock(&st->mu);
	while ((r = list)) {
		list = r->next;
		reply_finish(r, ok);
	}
}

struct siov_state_reply *siov_state_reply(struct siov_state *st, uint64_t seq, int fd,
					  const char *text, size_t len)
{
	struct siov_state_reply *r;

	if (!st || !st->loop || !st->writer_started || seq <= atomic_load(&st->durable))
		return NULL;
	r = malloc(sizeof(*r) + len);
	if (!r)
		return NULL;
	r->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (r->fd < 0) {
		free(r);
		return NULL;
	}
	r->seq = seq;
	r->len = len;
	r->next = NULL;
	atomic_init(&r->refs, 2);
	atomic_init(&r->sent, -EAGAIN);
	memcpy(r->text, text, len);
	pthread_mutex_lock(&st->mu);
	/* The writer publishes durable before it takes the replies: decided now, or it sends. */
	if (seq <= atomic_load(&st->durable) || atomic_load(&st->failed_from)) {
		pthread_mutex_unlock(&st->mu);
		close(r->fd);
		free(r);
		return NULL;
	}
	*st->replies_tail = r;
	st->replies_tail = &r->next;
	pthread_mutex_unlock(&st->mu);
	return r;
}

ssize_t siov_state_reply_sent(const struct siov_state_reply *r)
{
	return atomic_load(&r->sent);
}

/* Takes every record appended since the last round: one write, one fdatasync. */
static void *writer_main(void *arg)
{
	struct siov_state *st = arg;
	char *wbuf = NULL;
	size_t wcap = 0;

	pthread_mutex_lock(&st->mu);
	for (;;) {
		uint64_t first, last, t0;
		size_t len, len2;
		char *tmp;
		int rc;

		while (!(st->len && st->go) && !st->stop)
			pthread_cond_wait(&st->cv, &st->mu);
		if (!st->len)
			break;
		st->go = !st->loop; /* with a loop, the control thread says when */
		st->writing = true;
		tmp = st->buf, st->buf = wbuf, wbuf = tmp;
		len = st->len;
		st->len = 0;
		len2 = st->cap, st->cap = wcap, wcap = len2;
		last = st->buf_last;
		first = atomic_load(&st->durable) + 1;
		pthread_mutex_unlock(&st->mu);

		t0 = siov_now_ns();
		rc = atomic_load(&st->failed_from) ? 0 : write_batch(st, wbuf, len);
		note_sync_time(st, siov_now_ns() - t0);
		if (atomic_load(&st->failed_from) == 0) {
			if (rc < 0) {
				journal_failed(st, first, rc, strerror(-rc));
			} else {
				st->jrecords += last - first + 1;
				atomic_fetch_add(&st->st_records, last - first + 1);
				atomic_fetch_add(&st->st_batches, 1);
				atomic_store(&st->durable, last);
				maybe_rotate(st);
			}
		}
		/* Before the loop hears of it: the answers leave one thread hop sooner. */
		send_replies(st, last, rc == 0 && atomic_load(&st->failed_from) == 0);
		notify(st);
		pthread_mutex_lock(&st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	send_replies(st, UINT64_MAX, false); /* none can be left; the caller would send them */
	free(wbuf);
	return NULL;
}

/* ---- When the writer may start: group commit ---- */

/* Lets the writer take what is buffered: if it is idle, or (force) right after its batch. */
static void kick(struct siov_state *st, bool force)
{
	static const struct itimerspec off;

	pthread_mutex_lock(&st->mu);
	if (st->len && (force || !st->writing)) {
		st->go = true;
		pthread_cond_signal(&st->cv);
	}
	pthread_mutex_unlock(&st->mu);
	/* A stale timer would cut the next wait short. */
	if (st->timer_armed && timerfd_settime(st->tfd, 0, &off, NULL) == 0)
		st->timer_armed = false;
}

/* How long records wait for expected changes: twice their usual delay, at most a sync. */
#define EXPECT_MIN_NS 20000u
#define EXPECT_MAX_NS 2000000u

/* Waiting pays when the expected clients usually come back within half a sync. */
static bool worth_waiting(const struct siov_state *st)
{
	uint64_t turn = st->turn_ewma_ns;

	return st->expected && turn && turn < atomic_load(&st->sync_ewma_ns) / 2;
}

static void arm_timer(struct siov_state *st)
{
	uint64_t ns = SIOV_MIN(atomic_load(&st->sync_ewma_ns), 2 * st->turn_ewma_ns);
	struct itimerspec its = {0};

	ns = SIOV_MIN(SIOV_MAX(ns, EXPECT_MIN_NS), EXPECT_MAX_NS);
	its.it_value.tv_nsec = (long)ns;
	if (timerfd_settime(st->tfd, 0, &its, NULL) == 0)
		st->timer_armed = true;
	else
		kick(st, false); /* no timer: never hold records back */
}

static bool buffered(struct siov_state *st)
{
	bool any;

	pthread_mutex_lock(&st->mu);
	any = st->len > 0;
	pthread_mutex_unlock(&st->mu);
	return any;
}

/*
 * Records wait while a request is being handled (its own records join them)
 * and while expected changes are still to come, for the latter at most one
 * timer's worth (rearm: from now).
 */
static void settle(struct siov_state *st, bool rearm)
{
	bool wait = worth_waiting(st);

	if (!wait && st->holding == 0)
		kick(st, false);
	else if (wait && (rearm || !st->timer_armed) && buffered(st))
		arm_timer(st);
}

static void on_timer(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_state *st = arg;
	uint64_t v;

	(void)!read(st->tfd, &v, sizeof(v));
	st->timer_armed = false;
	/* Whoever did not send in time does not hold the others back any longer. */
	st->epoch_ns = siov_now_ns();
	st->expected = 0;
	settle(st, false);
}

static bool grouping(const struct siov_state *st)
{
	return st && st->loop && st->tfd >= 0;
}

uint64_t siov_state_expect(struct siov_state *st)
{
	if (!grouping(st))
		return 0;
	st->expected++;
	return siov_now_ns();
}

void siov_state_unexpect(struct siov_state *st, uint64_t token, bool came)
{
	uint64_t now = siov_now_ns();

	if (!grouping(st) || !token)
		return;
	if (came && now > token)
		st->turn_ewma_ns =
		    st->turn_ewma_ns ? (7 * st->turn_ewma_ns + now - token) / 8 : now - token;
	if (token > st->epoch_ns && st->expected > 0)
		st->expected--;
	settle(st, false);
}

void siov_state_hold(struct siov_state *st)
{
	if (grouping(st))
		st->holding++;
}

void siov_state_release(struct siov_state *st)
{
	if (!grouping(st) || st->holding == 0)
		return;
	st->holding--;
	settle(st, false);
}

static void on_durable(struct siov_watch *w, uint32_t events, void *arg)
{
	struct siov_state *st = arg;
	uint64_t v;

	(void)!read(st->efd, &v, sizeof(v));
	if (st->durable_cb)
		st->durable_cb(st->cb_arg);
	/* The writer is idle: what the answered clients send next joins the next sync. */
	settle(st, true);
}

static int lock_dir(struct siov_state *st, const char *dir, struct siov_err *err)
{
	st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->dirfd < 0)
		return siov_err_set(err, -errno, "cannot open %s: %s", dir, strerror(errno));
	/* Two daemons appending to one journal would corrupt it. */
	if (!st->readonly && flock(st->dirfd, LOCK_EX | LOCK_NB) < 0)
		return siov_err_set(err, errno == EWOULDBLOCK ? -EBUSY : -errno,
				    "%s is in use by another siovd (or cannot be locked: %s)", dir,
				    strerror(errno));
	return 0;
}

/* After recovery: cut a torn tail, reopen the last journal for appending. */
static int prepare_append(struct siov_state *st, struct recovery *r, struct siov_err *err)
{
	char file[64];
	int fd;

	unlinkat(st->dirfd, STATE_TMP, 0);
	for (size_t i = 0; i < r->nstale; i++)
		unlink_journal(st->dirfd, r->stale[i]);
	st->gen = r->last_gen;
	st->snap_entries = r->m.entries;
	if (!r->snapshot_found && write_snapshot(st->dirfd, &r->m, err) < 0)
		return -EIO;
	if (!r->have_journal)
		return 0; /* created with the first record */
	snprintf(file, sizeof(file), JOURNAL_PREFIX "%" PRIu64, r->last_gen);
	fd = openat(st->dirfd, file, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return siov_err_set(err, -errno, "cannot open %s: %s", file, strerror(errno));
	if (r->last_good < r->last_size &&
	    (ftruncate(fd, (off_t)r->last_good) < 0 || fdatasync(fd) < 0)) {
		close(fd);
		return siov_err_set(err, -errno, "cannot cut the torn end of %s: %s", file,
				    strerror(errno));
	}
	if (lseek(fd, 0, SEEK_END) < 0) {
		close(fd);
		return siov_err_set(err, -errno, "%s: %s", file, strerror(errno));
	}
	st->jfd = fd;
	st->jsize = st->jalloc = (off_t)r->last_good;
	st->jrecords = r->last_recs;
	return 0;
}

static int start_writer(struct siov_state *st, const struct siov_state_opts *opts)
{
	int rc;

	if (opts->loop) {
		st->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		st->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (st->efd < 0 || st->tfd < 0)
			return -errno;
		rc = siov_loop_add(opts->loop, st->efd, EPOLLIN, on_durable, st, &st->watch);
		if (rc == 0)
			rc = siov_loop_add(opts->loop, st->tfd, EPOLLIN, on_timer, st, &st->twatch);
		if (rc < 0)
			return rc;
	}
	st->go = !opts->loop;
	rc = -pthread_create(&st->writer, NULL, writer_main, st);
	st->writer_started = rc == 0;
	if (st->writer_started)
		pthread_setname_np(st->writer, "siov-journal");
	return rc;
}

int siov_state_open(const struct siov_state_opts *opts, struct siov_state **out,
		    struct siov_err *err)
{
	struct siov_state *st = calloc(1, sizeof(*st));
	struct recovery r = {0};
	int rc = -ENOMEM;

	if (!st)
		return siov_err_set(err, rc, "out of memory");
	st->dirfd = st->efd = st->jfd = st->tfd = -1;
	st->replies_tail = &st->replies;
	st->readonly = opts->readonly;
	st->loop = opts->loop;
	st->durable_cb = opts->durable_cb;
	st->cb_arg = opts->cb_arg;
	st->compact_records = opts->compact_records ? opts->compact_records : COMPACT_RECORDS;
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->cv, NULL);
	pthread_cond_init(&st->cv_done, NULL);
	if ((rc = lock_dir(st, opts->dir, err)) < 0 ||
	    (rc = recover(st->dirfd, UINT64_MAX, &r, err)) < 0)
		goto err;
	st->appended = r.m.seq;
	atomic_store(&st->durable, r.m.seq);
	if (!st->readonly &&
	    ((rc = prepare_append(st, &r, err)) < 0 || (rc = start_writer(st, opts)) < 0)) {
		if (!err->msg[0])
			siov_err_set(err, rc, "cannot start the state writer: %s", strerror(-rc));
		goto err;
	}
	st->boot = r.m;
	*out = st;
	return 0;

err:
	model_free(&r.m);
	siov_state_close(st);
	return rc;
}

/* Recovery checked every entry already; a kind's pass-1 objects come after its pass-0 ones. */
static int restore_kind(struct siov_state *st, size_t ki, struct siov_vdcm *vdcm)
{
	const struct state_kind *k = &kinds[ki];
	struct siov_err e;
	int failed = 0;
	void *conf = malloc(k->conf_size);

	if (!conf)
		return (int)json_object_object_length(st->boot.kinds[ki]);
	for (unsigned pass = 0; pass < 2; pass++) {
		json_object_object_foreach(st->boot.kinds[ki], name, o)
		{
			e = (struct siov_err){0};
			if (k->from_json(o, conf, &e)) {
				if (pass == 0) {
					SIOV_ERR("state: %s '%s' not restored: %s", k->what, name,
						 e.msg);
					failed++;
				}
				continue;
			}
			if ((k->pass ? k->pass(conf) : 0) != pass)
				continue;
			if (k->create(vdcm, conf, &e) < 0) {
				SIOV_ERR("state: %s '%s' not restored: %s", k->what, name, e.msg);
				failed++;
			}
		}
	}
	free(conf);
	return failed;
}

void siov_state_recovered(const struct siov_state *st, uint64_t *entries, uint64_t *seq)
{
	*entries = st->boot.entries;
	*seq = st->boot.seq;
}

int siov_state_restore(struct siov_state *st, struct siov_vdcm *vdcm)
{
	int failed = 0;

	for (size_t i = 0; i < NKINDS; i++)
		failed += restore_kind(st, i, vdcm);
	SIOV_INFO("state: restored %" PRIu64 " objects (%d failed) up to change #%" PRIu64,
		  st->boot.entries, failed, st->boot.seq);
	model_free(&st->boot);
	return failed;
}

static void stop_writer(struct siov_state *st)
{
	if (!st->writer_started)
		return;
	pthread_mutex_lock(&st->mu);
	st->stop = true;
	pthread_cond_broadcast(&st->cv);
	pthread_mutex_unlock(&st->mu);
	pthread_join(st->writer, NULL);
	st->writer_started = false;
	reap_compactor(st);
}

void siov_state_close(struct siov_state *st)
{
	struct siov_err err = {0};
	uint64_t entries;

	if (!st)
		return;
	stop_writer(st);
	/* A clean stop leaves the snapshot whole and no journal to replay. */
	if (st->jfd >= 0) {
		close(st->jfd);
		if (!atomic_load(&st->failed_from) &&
		    compact(st->dirfd, st->gen + 1, &entries, &err) < 0)
			SIOV_WARN("state: final compaction failed (the journal is kept): %s",
				  err.msg);
	}
	siov_loop_del(st->watch);
	siov_loop_del(st->twatch);
	if (st->efd >= 0)
		close(st->efd);
	if (st->tfd >= 0)
		close(st->tfd);
	if (st->dirfd >= 0)
		close(st->dirfd);
	model_free(&st->boot);
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->cv);
	pthread_cond_destroy(&st->cv_done);
	free(st->buf);
	free(st);
}

/* ---- Appending ---- */

static int64_t append(struct siov_state *st, struct json_object *rec, struct siov_err *err)
{
	const char *json;
	size_t jl, need;
	int64_t seq;
	char crc[10];

	if (st->readonly || !st->writer_started) {
		json_object_put(rec);
		return siov_err_set(err, -EROFS, "the state is read only");
	}
	if (atomic_load(&st->failed_from)) {
		json_object_put(rec);
		return siov_err_set(err, st->failed_rc,
				    "the state journal failed earlier (%s); restart siovd",
				    st->failed_msg);
	}
	seq = (int64_t)++st->appended;
	json_object_object_add(rec, "seq", json_object_new_int64(seq));
	json = json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN |
						       JSON_C_TO_STRING_NOSLASHESCAPE);
	jl = json ? strlen(json) : 0;
	snprintf(crc, sizeof(crc), "%08x ", crc32c(json, jl));
	pthread_mutex_lock(&st->mu);
	need = st->len + 9 + jl + 1;
	if (need > st->cap) {
		size_t cap = SIOV_MAX(need, st->cap * 2);
		char *p = realloc(st->buf, cap);
		if (!p || !json) {
			pthread_mutex_unlock(&st->mu);
			st->appended--;
			json_object_put(rec);
			return siov_err_set(err, -ENOMEM, "out of memory");
		}
		st->buf = p;
		st->cap = cap;
	}
	memcpy(st->buf + st->len, crc, 9);
	memcpy(st->buf + st->len + 9, json, jl);
	st->buf[need - 1] = '\n';
	st->len = need;
	st->buf_last = (uint64_t)seq;
	if (st->go)
		pthread_cond_signal(&st->cv); /* no loop: the writer takes records at once */
	pthread_mutex_unlock(&st->mu);
	json_object_put(rec);
	if (st->loop)
		settle(st, false);
	return seq;
}

static struct json_object *new_record(const char *op, const char *kind, const char *name)
{
	struct json_object *rec = json_object_new_object();

	if (!rec)
		return NULL;
	json_object_object_add(rec, "op", json_object_new_string(op));
	json_object_object_add(rec, "kind", json_object_new_string(kind));
	json_object_object_add(rec, "name", json_object_new_string(name));
	return rec;
}

int64_t siov_state_put(struct siov_state *st, const char *kind, const char *name,
		       struct json_object *conf, struct siov_err *err)
{
	struct json_object *rec = conf ? new_record("put", kind, name) : NULL;

	if (!rec) {
		json_object_put(conf);
		return siov_err_set(err, -ENOMEM, "out of memory");
	}
	json_object_object_add(rec, "conf", conf);
	return append(st, rec, err);
}

int64_t siov_state_del(struct siov_state *st, const char *kind, const char *name,
		       struct siov_err *err)
{
	struct json_object *rec = new_record("del", kind, name);

	if (!rec)
		return siov_err_set(err, -ENOMEM, "out of memory");
	return append(st, rec, err);
}

uint64_t siov_state_appended(const struct siov_state *st)
{
	return st->appended;
}

int siov_state_decided(struct siov_state *st, uint64_t seq, struct siov_err *err)
{
	uint64_t failed = atomic_load(&st->failed_from);

	if (seq <= atomic_load(&st->durable))
		return 1;
	if (failed && seq >= failed)
		return siov_err_set(err, st->failed_rc, "%s", st->failed_msg);
	return 0;
}

int siov_state_wait(struct siov_state *st, uint64_t seq, struct siov_err *err)
{
	int rc;

	pthread_mutex_lock(&st->mu);
	st->waiters++;
	/* Nobody waits for expected changes while this thread blocks. */
	if (st->len) {
		st->go = true;
		pthread_cond_signal(&st->cv);
	}
	while ((rc = siov_state_decided(st, seq, err)) == 0)
		pthread_cond_wait(&st->cv_done, &st->mu);
	st->waiters--;
	pthread_mutex_unlock(&st->mu);
	return rc < 0 ? rc : 0;
}

void siov_state_get_stats(struct siov_state *st, struct siov_state_stats *out)
{
	out->records = atomic_load(&st->st_records);
	out->batches = atomic_load(&st->st_batches);
	out->compactions = atomic_load(&st->st_compactions);
	out->sync_ns_total = atomic_load(&st->st_sync_ns);
	out->journal_bytes = 0;
	out->failed = atomic_load(&st->failed_from) != 0;
}

void siov_state_inject_write_error(struct siov_state *st, int rc)
{
	atomic_store(&st->inject_rc, rc);
}

int siov_state_load(struct siov_vdcm *vdcm, const char *dir, struct siov_err *err)
{
	struct siov_state_opts opts = {.dir = dir, .readonly = true};
	struct siov_state *st;
	struct stat sb;
	int rc;

	/* A state dir that does not exist yet is an empty configuration. */
	if (stat(dir, &sb) < 0 && errno == ENOENT)
		return 0;
	rc = siov_state_open(&opts, &st, err);
	if (rc < 0)
		return rc;
	rc = siov_state_restore(st, vdcm);
	siov_state_close(st);
	return rc;
}
