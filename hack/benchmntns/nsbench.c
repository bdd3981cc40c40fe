/*
 * nsbench: what a job's mount namespace costs its start and exit, without
 * ssi or CRIU around it (docs/BENCHMARKS.md, "A job's mount namespace").
 *
 * It clones N children in turn into the namespaces of a job before
 * (PID, IPC, UTS) and now (the same plus a mount namespace, in which the
 * child runs ssi-init's own setup_mounts: private mounts, a /proc of its
 * PID namespace, a tmpfs /dev/shm), each exiting at once, and prints the
 * medians of the parent's clone-to-reap times. As root:
 *
 *   cc -O2 -o /tmp/nsbench hack/benchmntns/nsbench.c && /tmp/nsbench 300
 */
#define main ssi_init_main
#include "../../cmd/ssi-init/main.c"
#undef main
#include <sched.h>
#include <time.h>

#define MAX_RUNS 1000

static int child(void *mounts)
{
	return mounts && setup_mounts() < 0 ? 1 : 0;
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static char stack[1 << 16];
	static double runs[2][MAX_RUNS];
	int n = argc > 1 ? atoi(argv[1]) : 300;
	if (n < 10 || n > MAX_RUNS) {
		fprintf(stderr, "usage: nsbench [RUNS: 10..%d]\n", MAX_RUNS);
		return 2;
	}
	(void)ssi_init_main;
	for (int i = 0; i < n; i++) {
		for (int v = 0; v < 2; v++) { /* interleaved: before, now, before, ... */
			int flags = CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD | (v ? CLONE_NEWNS : 0);
			double t = now_ms();
			pid_t pid = clone(child, stack + sizeof stack, flags, v ? (void *)1 : NULL);
			int st;
			if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
				fprintf(stderr, "nsbench: child failed (are you root?)\n");
				return 1;
			}
			runs[v][i] = now_ms() - t;
		}
	}
	const char *name[2] = {"PID+IPC+UTS (before)", "+ mount ns, /proc, /dev/shm (now)"};
	for (int v = 0; v < 2; v++) {
		qsort(runs[v], n, sizeof runs[v][0], cmp);
		printf("%-36s n=%d  median %.3f ms  p10 %.3f  p90 %.3f\n", name[v], n, runs[v][n / 2], runs[v][n / 10], runs[v][n * 9 / 10]);
	}
	return 0;
}
