/*
 * ssi-init: PID 1 of every ssi job (a job's PID namespace), started by
 * ssi-shim. It is C, not Go, for one reason: CRIU dumps and restores it with
 * the job at every migration and checkpoint, and a Go program is six threads
 * and a gigabyte of reserved address space to walk where this is one thread
 * and a few pages (measured: a Go init added 14 ms to every dump, and ~0.8 MiB
 * of private memory to every job). It does what tini and catatonit do, plus
 * ssi's start-up handshake; its behaviour is that of `ssi-shim init`
 * (shim/init.go), which remains the fallback when this binary is missing.
 *
 *   ssi-init --node NODE --gpid N [--uid N --gid N --groups G,...] [--tty] -- CMD [ARGS...]
 *
 * fd 3 is a socket shared with the shim. init waits there for one byte (the
 * shim has put it in the job's cgroup), starts CMD as the job's user in its
 * own process group (or, with --tty, its own session with fd 0 as controlling
 * terminal), answers 's' once CMD has been exec'd (nothing, if CMD could not
 * start: the shim reads end of file), then forwards the signals it gets to
 * CMD's process group, reaps every orphan, and exits with CMD's status
 * (128+N if a signal N killed it). Exit codes of its own: 127 command not
 * found, 126 cannot execute, 2 bad arguments, 1 the shim went away or the
 * job's mount namespace could not be set up (setup_mounts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYNC_FD 3
#define MAX_GROUPS 256

extern char **environ;

/* The signals passed on to the job's process group (shim/init.go's list).
 * SIGKILL and SIGSTOP cannot be caught; the agent delivers those itself. */
static const int forwarded[] = {
	SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT,
	SIGTSTP, SIGTTIN, SIGTTOU, SIGALRM, SIGPWR,
};

/* setup_mounts makes init's mount namespace (CLONE_NEWNS, a copy of the
 * node's made by the shim's clone) the job's own:
 *
 * - every mount private, so that nothing the job mounts propagates to the node
 *   (and the node's later mounts do not reach the job: CRIU could not
 *   reproduce a propagation from a mount of the node it leaves);
 * - the node's nsfs mounts (`ip netns` names, other namespaces' handles)
 *   detached: they mean nothing on another node, and CRIU would have to bind
 *   them there from the same path;
 * - a /proc of the job's PID namespace over /proc: programs see their own
 *   PIDs, and CRIU's parasite, finding a /proc of the task's PID namespace,
 *   never mounts one of its own in the job's working directory (where it used
 *   to leave "proc.crtools" behind when a dump was interrupted, and could not
 *   in a read-only one);
 * - a /dev/shm of its own (tmpfs): POSIX shared memory and semaphores are the
 *   job's, and CRIU carries their contents in the images.
 *
 * The rest of the node's file system stays visible as it was. CRIU dumps the
 * mounts shared with the node as external (--external mnt[]) and binds them
 * again from the same paths of the restoring node (--ext-mount-map auto
 * --root /).
 *
 * It is init's work, not the shim's: a proc file system shows the PID
 * namespace of the process that mounts it, and only init is inside the job's
 * (the shim, outside it, would need a second fork to get in). Init does it
 * before it runs anything of the job's, as root. */
static int setup_mounts(void)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		fprintf(stderr, "ssi init: make the job's mounts private: %s\n", strerror(errno));
		return -1;
	}
	FILE *mi = fopen("/proc/self/mountinfo", "re");
	if (!mi) {
		fprintf(stderr, "ssi init: read /proc/self/mountinfo: %s\n", strerror(errno));
		return -1;
	}
	char line[4096], point[PATH_MAX], fstype[64];
	while (fgets(line, sizeof line, mi)) {
		const char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 || sscanf(sep + 3, "%63s", fstype) != 1)
			continue;
		/* mountinfo escapes blanks as octal (\040): such a name is not
		 * found, and CRIU's own error will name it. */
		if (!strcmp(fstype, "nsfs"))
			umount2(point, MNT_DETACH);
	}
	fclose(mi);
	/* The node's /proc (and what is mounted below it) goes; ours comes. */
	while (umount2("/proc", MNT_DETACH) == 0)
		;
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		fprintf(stderr, "ssi init: mount the job's /proc: %s\n", strerror(errno));
		return -1;
	}
	while (umount2("/dev/shm", MNT_DETACH) == 0)
		;
	if (mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) {
		fprintf(stderr, "ssi init: mount the job's /dev/shm: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/* reopen_stdio opens again, in the job's mount namespace, those of fds 0-2
 * that are devices (/dev/null, a terminal) the shim opened in the node's: CRIU
 * finds a file only through a mount of the dumped namespace ("Can't lookup
 * mount=N for fd=0"). Pipes need nothing. */
static int reopen_stdio(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		struct stat st;
		char link[32], path[PATH_MAX];
		if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode))
			continue;
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, path, sizeof path - 1);
		int flags = fcntl(fd, F_GETFL);
		if (n <= 0 || flags < 0) {
			fprintf(stderr, "ssi init: fd %d: %s\n", fd, strerror(errno));
			return -1;
		}
		path[n] = '\0';
		int nfd = open(path, (flags & (O_ACCMODE | O_APPEND | O_NONBLOCK)) | O_NOCTTY | O_CLOEXEC);
		if (nfd < 0) {
			fprintf(stderr, "ssi init: open %s again in the job's mount namespace: %s\n", path, strerror(errno));
			return -1;
		}
		if (dup3(nfd, fd, 0) < 0) {
			fprintf(stderr, "ssi init: dup3 %s: %s\n", path, strerror(errno));
			return -1;
		}
		close(nfd);
	}
	return 0;
}

static int usage(void)
{
	fputs("ssi-init: internal command, started by ssi-shim: ssi-init --node NODE [--uid N --gid N --groups G,...] [--tty] -- CMD [ARGS...]\n", stderr);
	return 2;
}

static int parse_id(const char *s, unsigned long *out)
{
	char *end;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && *s != '-' && *out <= UINT_MAX ? 0 : -1;
}

/* find_command resolves argv0 on PATH as execvp would; it returns 0 with the
 * path in buf, or an errno (ENOENT: not found; EACCES: found, not runnable). */
static int find_command(const char *argv0, char *buf, size_t len)
{
	if (strchr(argv0, '/')) {
		if (snprintf(buf, len, "%s", argv0) >= (int)len)
			return ENAMETOOLONG;
		return access(buf, F_OK) == 0 ? 0 : errno;
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	int seen_eacces = 0;
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		size_t dl = end - p;
		if (snprintf(buf, len, "%.*s%s%s", (int)dl, p, dl ? "/" : "", argv0) < (int)len) {
			if (access(buf, X_OK) == 0)
				return 0;
			if (errno == EACCES)
				seen_eacces = 1;
		}
		if (!*end)
			break;
		p = end;
	}
	return seen_eacces ? EACCES : ENOENT;
}

static int not_runnable(const char *cmd, const char *node, int err)
{
	if (err == ENOENT || err == ENOTDIR) {
		fprintf(stderr, "ssi: %s: command not found on node %s\n", cmd, node);
		return 127;
	}
	fprintf(stderr, "ssi: %s: cannot execute on node %s: %s\n", cmd, node, strerror(err));
	return 126;
}

int main(int argc, char **argv)
{
	const char *node = "";
	unsigned long uid = 0, gid = 0, v;
	gid_t groups[MAX_GROUPS];
	int ngroups = 0, tty = 0, i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (!strcmp(a, "--tty")) {
			tty = 1;
			continue;
		}
		if (i + 1 >= argc)
			return usage();
		const char *val = argv[++i];
		if (!strcmp(a, "--node")) {
			node = val;
		} else if (!strcmp(a, "--gpid")) {
			if (parse_id(val, &v))
				return usage();
		} else if (!strcmp(a, "--uid")) {
			if (parse_id(val, &uid))
				return usage();
		} else if (!strcmp(a, "--gid")) {
			if (parse_id(val, &gid))
				return usage();
		} else if (!strcmp(a, "--groups")) {
			char *list = strdup(val), *save = NULL, *tok;
			for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				if (parse_id(tok, &v) || ngroups == MAX_GROUPS) {
					fprintf(stderr, "ssi init: --groups %s: %s is not a group id\n", val, tok);
					return 2;
				}
				groups[ngroups++] = (gid_t)v;
			}
			free(list);
		} else {
			return usage();
		}
	}
	if (i >= argc)
		return usage();
	char **cmd = argv + i;

	/* The sync socket must not leak into the job; nor anything above it. */
	fcntl(SYNC_FD, F_SETFD, FD_CLOEXEC);
	syscall(SYS_close_range, SYNC_FD + 1, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);

	if (setup_mounts() < 0 || reopen_stdio() < 0) {
		close(SYNC_FD);
		return 1;
	}

	char b;
	if (read(SYNC_FD, &b, 1) != 1) {
		fputs("ssi init: the shim went away before the job started\n", stderr);
		return 1;
	}
	char path[PATH_MAX];
	int err = find_command(cmd[0], path, sizeof path);
	if (err) {
		close(SYNC_FD);
		return not_runnable(cmd[0], node, err);
	}
	char wd[PATH_MAX];
	if (!getcwd(wd, sizeof wd)) {
		close(SYNC_FD);
		fprintf(stderr, "ssi: %s: working directory on node %s: %s\n", cmd[0], node, strerror(errno));
		return 126;
	}

	/* Block the signals init handles before CMD exists, so none is missed;
	 * CMD gets the mask and dispositions it would have had. */
	sigset_t handled, old;
	sigemptyset(&handled);
	for (i = 0; i < (int)(sizeof forwarded / sizeof forwarded[0]); i++)
		sigaddset(&handled, forwarded[i]);
	sigaddset(&handled, SIGCHLD);
	/* The shim ignores SIGHUP, SIGINT and SIGPIPE, and an ignored signal is
	 * discarded even while blocked: back to the defaults first. */
	for (i = 1; i < NSIG; i++)
		if (sigismember(&handled, i) == 1 || i == SIGPIPE)
			signal(i, SIG_DFL);
	sigprocmask(SIG_BLOCK, &handled, &old);

	/* The child reports a failed exec through this pipe (closed on exec). */
	int report[2];
	if (pipe2(report, O_CLOEXEC) < 0) {
		fprintf(stderr, "ssi init: pipe: %s\n", strerror(errno));
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "ssi init: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		close(report[0]);
		int e = 0;
		if (tty) {
			if (setsid() < 0 || ioctl(0, TIOCSCTTY, 0) < 0)
				e = errno;
		} else if (setpgid(0, 0) < 0) {
			e = errno;
		}
		/* init stays root (CRIU needs that); the command runs as the job's
		 * user: groups, then gid, then uid, then the directory, as Go's
		 * fork does, so a directory the user may not enter fails here. */
		if (!e && setgroups(ngroups, groups) < 0)
			e = errno;
		if (!e && setgid((gid_t)gid) < 0)
			e = errno;
		if (!e && setuid((uid_t)uid) < 0)
			e = errno;
		if (!e && chdir(wd) < 0)
			e = errno;
		if (!e) {
			for (int s = 1; s < NSIG; s++)
				signal(s, SIG_DFL); /* fails, harmlessly, for KILL, STOP and libc's own */
			sigprocmask(SIG_SETMASK, &old, NULL);
			execve(path, cmd, environ);
			e = errno;
		}
		(void)!write(report[1], &e, sizeof e);
		_exit(127);
	}
	close(report[1]);
	int childErr = 0;
	ssize_t n;
	while ((n = read(report[0], &childErr, sizeof childErr)) < 0 && errno == EINTR)
		;
	close(report[0]);
	if (n == (ssize_t)sizeof childErr) {
		waitpid(pid, NULL, 0);
		close(SYNC_FD);
		if (childErr == EACCES && uid != 0) {
			fprintf(stderr, "ssi: %s: cannot execute on node %s as uid %lu: permission denied (to the command, or to the working directory %s)\n", cmd[0], node, uid, wd);
			return 126;
		}
		return not_runnable(cmd[0], node, childErr);
	}
	(void)!write(SYNC_FD, "s", 1);
	close(SYNC_FD);
	/* Init reads nothing: its stdin goes back to /dev/null, so that the job's
	 * stdin pipe has the job alone for reader. */
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null >= 0) {
		dup3(null, 0, 0);
		close(null);
	}

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&handled, &si);
		if (sig < 0)
			continue; /* EINTR */
		if (sig != SIGCHLD) {
			if (kill(-pid, sig) < 0 && errno == ESRCH)
				kill(pid, sig);
			continue;
		}
		for (;;) {
			int status;
			pid_t w = waitpid(-1, &status, WNOHANG);
			if (w <= 0)
				break;
			if (w != pid)
				continue; /* an orphan re-parented to us */
			if (WIFSIGNALED(status))
				return 128 + WTERMSIG(status);
			return WEXITSTATUS(status);
		}
	}
}
