/*
 * bench_proto.c - the protocol's JSON costs, jansson against proto/jfast:
 * parsing the typical request line and dumping the typical answer, as the
 * broker does for every request (issue 7).
 *
 * Output: `bench: <name> <value> ns/op` per operation.  Each benchmark
 * doubles N until a run takes at least BENCH_MIN_NS.  Wall time moves with
 * the machine's load; the repeatable figure is the instruction count:
 *
 *   bench_proto count <op> <n>     runs one op n times, nothing else
 *
 * under `valgrind --tool=callgrind` (then callgrind_annotate --inclusive=yes
 * gives json_loadb, jfast_parse, json_dumpb and jfast_dump per call) or
 * `perf stat -e instructions:u` (subtract a run with n = 0).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jfast.h"
#include "proto.h"

#define BENCH_MIN_NS 200000000LL /* 0.2 s per reported run */

static const char bench_req[] =
    "{\"jsonrpc\":\"2.0\",\"id\":17,\"method\":\"send\",\"params\":"
    "{\"name\":\"q\",\"value\":\"abc\"}}";
static const char bench_ans[] =
    "{\"jsonrpc\":\"2.0\",\"id\":17,\"result\":{\"value\":\"abc\","
    "\"ok\":true}}";

static json_t *bench_ans_tree;
static jfast_buf bench_buf;
static volatile size_t bench_sink;

static long long bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Each op does one operation and leaves nothing behind. */

static int op_parse_jansson(void)
{
    json_t *v = json_loadb(bench_req, sizeof bench_req - 1,
                           JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    if (!v)
        return -1;
    json_decref(v);
    return 0;
}

static int op_parse_jfast(void)
{
    json_t *v = jfast_parse(bench_req, sizeof bench_req - 1);
    if (!v)
        return -1;
    json_decref(v);
    return 0;
}

/* What proto_dump_line did before jfast: one json_dumpb into a stack
 * buffer (the copy to the heap left out). */
static int op_dump_jansson(void)
{
    char tmp[1024];
    size_t n = json_dumpb(bench_ans_tree, tmp, sizeof tmp,
                          JSON_COMPACT | JSON_ENCODE_ANY);
    bench_sink += n;
    return n ? 0 : -1;
}

static int op_dump_jfast(void)
{
    bench_buf.len = 0;
    if (jfast_dump(&bench_buf, bench_ans_tree))
        return -1;
    bench_sink += bench_buf.len;
    return 0;
}

/* The whole of the protocol's calls, as the daemon makes them. */
static int op_proto_parse_line(void)
{
    proto_error err;
    json_t *v = proto_parse_line(bench_req, sizeof bench_req - 1, NULL, &err);
    if (!v)
        return -1;
    json_decref(v);
    return 0;
}

static int op_proto_dump_line(void)
{
    size_t len;
    char *line = proto_dump_line(bench_ans_tree, &len);
    if (!line)
        return -1;
    bench_sink += len;
    free(line);
    return 0;
}

static const struct {
    const char *name;
    int (*op)(void);
} bench_ops[] = {
    {"json_parse_request_jansson", op_parse_jansson},
    {"json_parse_request_jfast", op_parse_jfast},
    {"json_dump_answer_jansson", op_dump_jansson},
    {"json_dump_answer_jfast", op_dump_jfast},
    {"proto_parse_line", op_proto_parse_line},
    {"proto_dump_line", op_proto_dump_line},
};
#define BENCH_NOPS (sizeof bench_ops / sizeof bench_ops[0])

static int bench_run(int (*op)(void), long long n)
{
    for (long long i = 0; i < n; i++)
        if (op())
            return -1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *filter = getenv("BENCH_FILTER");
    int rc = 0;

    bench_ans_tree = json_loadb(bench_ans, sizeof bench_ans - 1, 0, NULL);
    if (!bench_ans_tree) {
        fprintf(stderr, "bench_proto: cannot load the answer\n");
        return 1;
    }
    if (argc == 4 && strcmp(argv[1], "count") == 0) {
        long long n = atoll(argv[3]);
        for (size_t i = 0; i < BENCH_NOPS; i++) {
            if (strstr(bench_ops[i].name, argv[2])) {
                rc = bench_run(bench_ops[i].op, n);
                goto out;
            }
        }
        fprintf(stderr, "bench_proto: no op %s\n", argv[2]);
        rc = -1;
        goto out;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: bench_proto [count <op> <n>]\n");
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i < BENCH_NOPS; i++) {
        long long n = 1000, t;
        if (filter && !strstr(bench_ops[i].name, filter))
            continue;
        for (;;) {
            long long t0 = bench_now();
            if (bench_run(bench_ops[i].op, n)) {
                fprintf(stderr, "bench_proto: %s failed\n", bench_ops[i].name);
                rc = -1;
                goto out;
            }
            t = bench_now() - t0;
            if (t >= BENCH_MIN_NS || n >= (1LL << 40))
                break;
            n *= 2;
        }
        printf("bench: %s %.1f ns/op\n", bench_ops[i].name, (double)t / n);
        fflush(stdout);
    }
out:
    json_decref(bench_ans_tree);
    free(bench_buf.p);
    return rc ? 1 : 0;
}
