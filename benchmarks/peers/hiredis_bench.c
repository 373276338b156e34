/* hiredis_bench: the peer that benchmarks/connection_bench.cpp is compared with.
 *
 * The same workloads, timing and output format as connection_bench, written with the plain
 * synchronous hiredis API (Debian's libhiredis-dev), the usual C baseline:
 *   seq_get            one redisCommand("GET") round trip after another (1 request in flight)
 *   pipelined_100      redisAppendCommand x 100, then 100 redisGetReply, repeated
 *   batch_100_hgetall  100 HGETALL of 6-field hashes pipelined the same way
 * Each workload: a warm-up, then `repeat` timed runs of `seconds`; the median run is reported
 * with the min-max spread. One machine-readable line per workload:
 *   workload=seq_get unit=ops ops_per_s=... min=... max=... p50_us=... p99_us=...
 *
 * Build: gcc -O2 -o hiredis_bench hiredis_bench.c -lhiredis   (run_connection.sh does it)
 * Usage: hiredis_bench [--port P] [--host H] [--seconds S] [--repeat R] [--warmup S]
 *                     [--only name,name...]
 * (host and port default to REDIS_HOST / REDIS_PORT, else 127.0.0.1:6379)
 */
#define _POSIX_C_SOURCE 200809L
#include <hiredis/hiredis.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPEAT 64
#define BATCH 100
#define HASHES 100

static const char* host = "127.0.0.1";
static int port = 6379;
static double seconds = 2.0;
static double warmup = 1.0;
static int repeat = 5;
static const char* only = NULL; /* comma-separated workload names; NULL: all */

static const char* const get_key = "rediskit:bench:get";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(redisContext* c, const char* what) {
  fprintf(stderr, "hiredis_bench: %s: %s\n", what, c && c->err ? c->errstr : "unexpected reply");
  exit(1);
}

static redisReply* command(redisContext* c, const char* fmt, const char* a) {
  redisReply* r = redisCommand(c, fmt, a);
  if (!r) die(c, "command failed");
  if (r->type == REDIS_REPLY_ERROR) {
    fprintf(stderr, "hiredis_bench: server error: %s\n", r->str);
    exit(1);
  }
  return r;
}

static void setup(redisContext* c) {
  freeReplyObject(command(c, "SET %s abc", get_key));
  for (int i = 0; i < HASHES; ++i) {
    char key[64];
    snprintf(key, sizeof key, "rediskit:bench:user:%d", i);
    redisReply* r = redisCommand(
        c, "HSET %s id %d name %s%d email user%d@example.com status online avatar "
           "https://cdn.example.com/avatars/%d.png last_seen 1700000000",
        key, i, "User ", i, i, i);
    if (!r || r->type == REDIS_REPLY_ERROR) die(c, "HSET failed");
    freeReplyObject(r);
  }
}

/* ---- workloads: each runs until `deadline` and returns what it did ------------------------- */

typedef struct {
  uint64_t units;     /* GETs, or batches */
  double* lat_us;     /* per round trip, when collected */
  size_t lat_n, lat_cap;
} Run;

static void lat_push(Run* r, double us) {
  if (r->lat_n == r->lat_cap) {
    r->lat_cap = r->lat_cap ? r->lat_cap * 2 : 65536;
    r->lat_us = realloc(r->lat_us, r->lat_cap * sizeof(double));
    if (!r->lat_us) exit(1);
  }
  r->lat_us[r->lat_n++] = us;
}

static void seq_get(redisContext* c, double deadline, Run* run) {
  double t = now_s();
  while (t < deadline) {
    redisReply* r = redisCommand(c, "GET %s", get_key);
    if (!r || r->type != REDIS_REPLY_STRING || r->len != 3) die(c, "GET");
    freeReplyObject(r);
    double const t2 = now_s();
    lat_push(run, (t2 - t) * 1e6);
    t = t2;
    ++run->units;
  }
}

static void pipelined_100(redisContext* c, double deadline, Run* run) {
  while (now_s() < deadline) {
    for (int i = 0; i < BATCH; ++i) redisAppendCommand(c, "GET %s", get_key);
    for (int i = 0; i < BATCH; ++i) {
      redisReply* r = NULL;
      if (redisGetReply(c, (void**)&r) != REDIS_OK || !r || r->type != REDIS_REPLY_STRING)
        die(c, "GET (pipelined)");
      freeReplyObject(r);
    }
    run->units += BATCH;
  }
}

static void batch_100_hgetall(redisContext* c, double deadline, Run* run) {
  char keys[HASHES][64];
  for (int i = 0; i < HASHES; ++i) snprintf(keys[i], sizeof keys[i], "rediskit:bench:user:%d", i);
  double t = now_s();
  while (t < deadline) {
    for (int i = 0; i < HASHES; ++i) redisAppendCommand(c, "HGETALL %s", keys[i]);
    for (int i = 0; i < HASHES; ++i) {
      redisReply* r = NULL;
      if (redisGetReply(c, (void**)&r) != REDIS_OK || !r || r->type != REDIS_REPLY_ARRAY ||
          r->elements != 12)
        die(c, "HGETALL");
      freeReplyObject(r);
    }
    double const t2 = now_s();
    lat_push(run, (t2 - t) * 1e6);
    t = t2;
    ++run->units;
  }
}

/* ---- timing and output ---------------------------------------------------------------------- */

static int cmp_double(const void* a, const void* b) {
  double const x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double percentile(double* v, size_t n, double p) { /* v sorted */
  if (n == 0) return 0;
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return v[i];
}

typedef void (*Workload)(redisContext*, double, Run*);

static int wanted(const char* name) {
  if (!only) return 1;
  size_t const n = strlen(name);
  for (const char* p = only; *p;) {
    const char* e = strchr(p, ',');
    size_t const len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return 1;
    if (!e) break;
    p = e + 1;
  }
  return 0;
}

static void measure(redisContext* c, const char* name, const char* unit, Workload w) {
  if (!wanted(name)) return;
  Run scratch = {0};
  w(c, now_s() + warmup, &scratch);
  free(scratch.lat_us);

  double rate[MAX_REPEAT], sorted[MAX_REPEAT];
  Run all = {0};
  for (int i = 0; i < repeat; ++i) {
    Run run = {0};
    double const t0 = now_s();
    w(c, t0 + seconds, &run);
    double const el = now_s() - t0;
    rate[i] = (double)run.units / el;
    for (size_t k = 0; k < run.lat_n; ++k) lat_push(&all, run.lat_us[k]);
    free(run.lat_us);
  }
  memcpy(sorted, rate, sizeof(double) * (size_t)repeat);
  qsort(sorted, (size_t)repeat, sizeof(double), cmp_double);
  double const med = repeat % 2 ? sorted[repeat / 2]
                                : (sorted[repeat / 2 - 1] + sorted[repeat / 2]) / 2;
  printf("workload=%s unit=%s ops_per_s=%.0f min=%.0f max=%.0f", name, unit, med, sorted[0],
         sorted[repeat - 1]);
  if (strcmp(unit, "batches") == 0) printf(" ms_per_batch=%.3f", 1000.0 / med);
  if (all.lat_n) {
    qsort(all.lat_us, all.lat_n, sizeof(double), cmp_double);
    printf(" p50_us=%.1f p99_us=%.1f", percentile(all.lat_us, all.lat_n, 0.50),
           percentile(all.lat_us, all.lat_n, 0.99));
  }
  printf(" runs=");
  for (int i = 0; i < repeat; ++i) printf(i ? ",%.0f" : "%.0f", rate[i]);
  printf("\n");
  fflush(stdout);
  free(all.lat_us);
}

static void usage(void) {
  fprintf(stderr,
          "usage: hiredis_bench [--port P] [--host H] [--seconds S] [--repeat R] [--warmup S]\n"
          "                    [--only name,name...]\n");
  exit(2);
}

int main(int argc, char** argv) {
  if (getenv("REDIS_HOST")) host = getenv("REDIS_HOST");
  if (getenv("REDIS_PORT")) port = atoi(getenv("REDIS_PORT"));
  for (int i = 1; i < argc; ++i) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--port")) port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--host")) host = argv[++i];
    else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--repeat")) repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--warmup")) warmup = atof(argv[++i]);
    else if (!strcmp(argv[i], "--only")) only = argv[++i];
    else usage();
  }
  if (repeat < 1 || repeat > MAX_REPEAT || seconds <= 0 || port <= 0) usage();

  redisContext* c = redisConnect(host, port);
  if (!c || c->err) die(c, "connect");
  setup(c);

  measure(c, "seq_get", "ops", seq_get);
  measure(c, "pipelined_100", "ops", pipelined_100);
  measure(c, "batch_100_hgetall", "batches", batch_100_hgetall);

  redisFree(c);
  return 0;
}
