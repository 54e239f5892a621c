/*
 * init.c - PID 1 of the benchmark Linux guest (lives in an initramfs).
 *
 * Sequence:
 *   1. mount /proc, /sys and /dev (devtmpfs), attach fds 0/1/2 to /dev/console
 *   2. load the kernel modules listed in /lib/modules/load.order (finit_module)
 *   3. read the job from /proc/cmdline:
 *        bench=none                       boot probe, nothing to run
 *        bench=blk dev=/dev/vda reads=N bs=B [reps=R] [dev_timeout=S]
 *                                         run /bin/blk_bench DEV N B (R times)
 *        bench=net ip=A.B.C.D/P [net_timeout=S]
 *                                         configure lo + first NIC, then stay
 *                                         up (the kernel answers ICMP) until a
 *                                         line "quit" arrives on the console
 *                                         or S seconds elapse
 *        bench=script [script_timeout=S]  run /bin/sh /job.sh (the job file
 *                                         comes from a second cpio archive
 *                                         appended to the initramfs); its
 *                                         stdout and stderr are relayed line
 *                                         by line; killed after S seconds
 *                                         (exit status 124)
 *   4. print "UNIKIO-BEGIN", the job output, "UNIKIO-END status=<rc>",
 *      sync and power off.  Any failure prints "UNIKIO-ERROR <message>" and
 *      powers off too.  PID 1 never returns.
 *
 * When not running as PID 1 (e.g. a developer starts it by hand) it exits
 * with the job status instead of powering the machine off.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define LOAD_ORDER "/lib/modules/load.order"
#define BLK_BENCH "/bin/blk_bench"
#define CMDLINE_MAX 4096
#define DEFAULT_DEV_TIMEOUT_S 10L
#define NIC_WAIT_S 10L
#define SCRIPT_SHELL "/bin/sh"
#define SCRIPT_PATH "/job.sh"
#define SCRIPT_TIMEOUT_STATUS 124

static char g_cmdline[CMDLINE_MAX];

/* ------------------------------------------------------------------ output */

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	write_all(STDOUT_FILENO, buf, (size_t)n);
}

static __attribute__((noreturn)) void finish(int status)
{
	sync();
	if (getpid() != 1)
		exit(status);
	reboot(RB_POWER_OFF);
	/* Power off did not happen: exiting PID 1 panics the kernel, which
	 * with panic=-1 and QEMU's -no-reboot also ends the VM.  Try halt
	 * first so that this path is only a last resort. */
	reboot(RB_HALT_SYSTEM);
	for (;;)
		pause();
}

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *fmt, ...)
{
	char buf[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	say("UNIKIO-ERROR %s", buf);
	finish(1);
}

/* ------------------------------------------------------------ early setup */

static void mount_one(const char *src, const char *target, const char *type)
{
	if (mkdir(target, 0755) < 0 && errno != EEXIST)
		fail("mkdir %s: %s", target, strerror(errno));
	if (mount(src, target, type, MS_NOSUID, NULL) < 0 && errno != EBUSY)
		fail("mount %s on %s: %s", type, target, strerror(errno));
}

static void attach_console(void)
{
	int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct termios t;

	if (fd < 0)
		return; /* keep whatever the kernel gave us */
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	/* No echo: a "quit" typed by the host must not show up as job output. */
	if (tcgetattr(STDIN_FILENO, &t) == 0) {
		t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
		t.c_oflag |= OPOST | ONLCR;
		tcsetattr(STDIN_FILENO, TCSANOW, &t);
	}
}

static void early_setup(void)
{
	mount_one("proc", "/proc", "proc");
	mount_one("sysfs", "/sys", "sysfs");
	mount_one("devtmpfs", "/dev", "devtmpfs");
	attach_console();
}

/* --------------------------------------------------------------- modules */

static void trim_line(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
			 s[n - 1] == '\t'))
		s[--n] = '\0';
}

static void load_modules(void)
{
	FILE *f = fopen(LOAD_ORDER, "re");
	char line[PATH_MAX];

	if (f == NULL) {
		if (errno == ENOENT)
			return; /* nothing to load */
		fail("open %s: %s", LOAD_ORDER, strerror(errno));
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char path[PATH_MAX + 2];
		const char *rel = line;
		int fd;

		trim_line(line);
		while (*rel == '/')
			rel++;
		if (*rel == '\0' || *rel == '#')
			continue;
		snprintf(path, sizeof(path), "/%s", rel);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fail("module %s: open: %s", path, strerror(errno));
		if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
			fail("module %s: finit_module: %s", path, strerror(errno));
		close(fd);
	}
	fclose(f);
}

/* ---------------------------------------------------------- command line */

static void read_cmdline(void)
{
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		fail("open /proc/cmdline: %s", strerror(errno));
	n = read(fd, g_cmdline, sizeof(g_cmdline) - 1);
	close(fd);
	if (n < 0)
		fail("read /proc/cmdline: %s", strerror(errno));
	g_cmdline[n] = '\0';
	trim_line(g_cmdline);
}

/* Copies the value of the last "key=value" word into out; NULL if absent. */
static const char *arg(const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = g_cmdline;
	const char *found = NULL;
	size_t flen = 0;

	while (*p != '\0') {
		const char *end;

		while (*p == ' ' || *p == '\t')
			p++;
		end = p;
		while (*end != '\0' && *end != ' ' && *end != '\t')
			end++;
		if ((size_t)(end - p) > klen && strncmp(p, key, klen) == 0 &&
		    p[klen] == '=') {
			found = p + klen + 1;
			flen = (size_t)(end - found);
		}
		p = end;
	}
	if (found == NULL)
		return NULL;
	if (flen >= outlen)
		fail("value of %s= too long", key);
	memcpy(out, found, flen);
	out[flen] = '\0';
	return out;
}

static long arg_long(const char *key, long dflt, long min, long max)
{
	char buf[64];
	char *end;
	long v;

	if (arg(key, buf, sizeof(buf)) == NULL)
		return dflt;
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno != 0 || end == buf || *end != '\0' || v < min || v > max)
		fail("bad value %s=%s", key, buf);
	return v;
}

static const char *arg_required(const char *key, char *out, size_t outlen)
{
	if (arg(key, out, outlen) == NULL)
		fail("missing %s= on the kernel command line", key);
	return out;
}

/* ----------------------------------------------------------------- time */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------- bench=blk */

static int wait_child(pid_t pid)
{
	int st;

	for (;;) {
		pid_t w = waitpid(-1, &st, 0); /* PID 1 reaps every child */

		if (w < 0) {
			if (errno == EINTR)
				continue;
			fail("waitpid: %s", strerror(errno));
		}
		if (w == pid)
			break;
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 255;
}

static int run_child(char *const argv[])
{
	pid_t pid = fork();

	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		execv(argv[0], argv);
		say("UNIKIO-ERROR exec %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	return wait_child(pid);
}

static void wait_for_path(const char *path, long timeout_s)
{
	double deadline = now_s() + (double)timeout_s;
	struct stat sb;

	while (stat(path, &sb) < 0) {
		if (now_s() > deadline)
			fail("%s did not appear within %ld s", path, timeout_s);
		sleep_ms(10);
	}
	if (!S_ISBLK(sb.st_mode))
		fail("%s is not a block device", path);
}

static int bench_blk(void)
{
	char dev[256], reads[32], bs[32];
	long reps, dev_timeout, i;
	int rc = 0;

	arg_required("dev", dev, sizeof(dev));
	arg_required("reads", reads, sizeof(reads));
	arg_required("bs", bs, sizeof(bs));
	/* validate the numbers here so that errors are reported uniformly */
	arg_long("reads", 0, 1, LONG_MAX);
	arg_long("bs", 0, 1, INT_MAX);
	reps = arg_long("reps", 1, 1, 1000000);
	dev_timeout = arg_long("dev_timeout", DEFAULT_DEV_TIMEOUT_S, 1, 3600);
	wait_for_path(dev, dev_timeout);

	say("UNIKIO-BEGIN");
	for (i = 0; i < reps && rc == 0; i++) {
		char *argv[] = { BLK_BENCH, dev, reads, bs, NULL };

		rc = run_child(argv);
	}
	return rc;
}

/* ------------------------------------------------------------- bench=net */

static void parse_ipv4_cidr(const char *spec, struct in_addr *addr,
			    struct in_addr *mask)
{
	char buf[64];
	char *slash, *end;
	long prefix = 24;

	if (strlen(spec) >= sizeof(buf))
		fail("bad ip=%s", spec);
	strcpy(buf, spec);
	slash = strchr(buf, '/');
	if (slash != NULL) {
		*slash = '\0';
		errno = 0;
		prefix = strtol(slash + 1, &end, 10);
		if (errno != 0 || end == slash + 1 || *end != '\0' || prefix < 0 ||
		    prefix > 32)
			fail("bad prefix in ip=%s", spec);
	}
	if (inet_pton(AF_INET, buf, addr) != 1)
		fail("bad address in ip=%s", spec);
	mask->s_addr = prefix == 0 ? 0 : htonl(0xffffffffu << (32 - prefix));
}

static void set_sockaddr(struct sockaddr *sa, struct in_addr a)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr = a;
	memcpy(sa, &sin, sizeof(sin));
}

static void if_up(int sock, const char *name)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		fail("SIOCGIFFLAGS %s: %s", name, strerror(errno));
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
		fail("SIOCSIFFLAGS %s: %s", name, strerror(errno));
}

static void if_set_addr(int sock, const char *name, struct in_addr addr,
			struct in_addr mask)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	set_sockaddr(&ifr.ifr_addr, addr);
	if (ioctl(sock, SIOCSIFADDR, &ifr) < 0)
		fail("SIOCSIFADDR %s: %s", name, strerror(errno));
	set_sockaddr(&ifr.ifr_netmask, mask);
	if (ioctl(sock, SIOCSIFNETMASK, &ifr) < 0)
		fail("SIOCSIFNETMASK %s: %s", name, strerror(errno));
}

/* Picks eth0 if present, else the alphabetically first non-lo interface. */
static int find_nic(char *out, size_t outlen)
{
	DIR *d = opendir("/sys/class/net");
	struct dirent *e;
	int found = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "lo") == 0)
			continue;
		if (strlen(e->d_name) >= outlen || strlen(e->d_name) >= IFNAMSIZ)
			continue;
		if (strcmp(e->d_name, "eth0") == 0 || !found ||
		    (strcmp(out, "eth0") != 0 && strcmp(e->d_name, out) < 0)) {
			strcpy(out, e->d_name);
			found = 1;
		}
	}
	closedir(d);
	return found;
}

/* Returns 1 when "quit" was read, 0 on timeout (timeout_s <= 0: none). */
static int wait_for_quit(long timeout_s)
{
	double deadline = now_s() + (double)timeout_s;
	char line[256];
	size_t used = 0;

	for (;;) {
		struct pollfd p = { STDIN_FILENO, POLLIN, 0 };
		int wait_ms = -1;
		ssize_t n;
		int r;

		if (timeout_s > 0) {
			double left = deadline - now_s();

			if (left <= 0)
				return 0;
			wait_ms = (int)(left * 1000.0) + 1;
		}
		r = poll(&p, 1, wait_ms);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fail("poll console: %s", strerror(errno));
		}
		if (r == 0)
			continue;
		if ((p.revents & POLLIN) == 0) {
			/* console hung up: nobody can send quit any more */
			if (timeout_s <= 0)
				fail("console closed and no net_timeout");
			sleep_ms(100);
			continue;
		}
		n = read(STDIN_FILENO, line + used, sizeof(line) - 1 - used);
		if (n <= 0) {
			sleep_ms(10);
			continue;
		}
		used += (size_t)n;
		line[used] = '\0';
		for (;;) {
			char *nl = strpbrk(line, "\r\n");

			if (nl == NULL)
				break;
			*nl = '\0';
			if (strcmp(line, "quit") == 0)
				return 1;
			memmove(line, nl + 1, strlen(nl + 1) + 1);
			used = strlen(line);
		}
		if (used >= sizeof(line) - 1)
			used = 0; /* overlong garbage line: drop it */
	}
}

static int bench_net(void)
{
	char spec[64], nic[IFNAMSIZ];
	struct in_addr addr, mask;
	double deadline = now_s() + (double)NIC_WAIT_S;
	long timeout_s;
	int sock;

	arg_required("ip", spec, sizeof(spec));
	parse_ipv4_cidr(spec, &addr, &mask);
	timeout_s = arg_long("net_timeout", 0, 0, 86400L * 365);

	while (!find_nic(nic, sizeof(nic))) {
		if (now_s() > deadline)
			fail("no network interface besides lo after %ld s",
			     NIC_WAIT_S);
		sleep_ms(10);
	}
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		fail("socket: %s", strerror(errno));
	if_up(sock, "lo");
	if_set_addr(sock, nic, addr, mask);
	if_up(sock, nic);
	close(sock);

	say("UNIKIO-BEGIN");
	say("NET up if=%s ip=%s", nic, spec);
	if (wait_for_quit(timeout_s))
		say("NET end reason=quit");
	else
		say("NET end reason=timeout");
	return 0;
}

/* ---------------------------------------------------------- bench=script */

/* Writes complete lines from buf[0..*used) to stdout; keeps the partial tail. */
static void relay_lines(char *buf, size_t *used, int flush_all)
{
	size_t start = 0;

	for (size_t i = 0; i < *used; i++) {
		if (buf[i] == '\n') {
			write_all(STDOUT_FILENO, buf + start, i + 1 - start);
			start = i + 1;
		}
	}
	if (flush_all && start < *used) {
		write_all(STDOUT_FILENO, buf + start, *used - start);
		write_all(STDOUT_FILENO, "\n", 1);
		start = *used;
	}
	memmove(buf, buf + start, *used - start);
	*used -= start;
}


static int bench_script(void)
{
	/* One pipe for stdout and stderr: each line reaches the console whole,
	 * never split by a line of the other stream, and only between the
	 * markers. */
	char buf[4096];
	size_t used = 0;
	long timeout_s = arg_long("script_timeout", 0, 0, 86400L * 365);
	double deadline = now_s() + (double)timeout_s;
	int timed_out = 0;
	int fds[2];
	pid_t pid;
	int rc;

	if (access(SCRIPT_PATH, R_OK) != 0)
		fail("%s: %s (bench=script needs a job archive)", SCRIPT_PATH,
		     strerror(errno));
	if (pipe2(fds, O_CLOEXEC) < 0)
		fail("pipe: %s", strerror(errno));
	say("UNIKIO-BEGIN");
	pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		char *argv[] = { SCRIPT_SHELL, SCRIPT_PATH, NULL };

		/* Own process group, so a timeout kills the whole job. */
		setpgid(0, 0);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		execv(argv[0], argv);
		say("UNIKIO-ERROR exec %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		struct pollfd p = { fds[0], POLLIN, 0 };
		int wait_ms = -1;
		ssize_t n;
		int r;

		if (timeout_s > 0 && !timed_out) {
			double left = deadline - now_s();

			if (left <= 0) {
				kill(-pid, SIGKILL);
				kill(pid, SIGKILL);
				timed_out = 1;
				continue;
			}
			wait_ms = (int)(left * 1000.0) + 1;
		}
		r = poll(&p, 1, wait_ms);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fail("poll job pipe: %s", strerror(errno));
		}
		if (r == 0)
			continue;
		n = read(fds[0], buf + used, sizeof(buf) - used);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail("read job pipe: %s", strerror(errno));
		}
		if (n == 0)
			break; /* every writer (the job and its children) is gone */
		used += (size_t)n;
		relay_lines(buf, &used, used == sizeof(buf));
	}
	relay_lines(buf, &used, 1);
	close(fds[0]);
	rc = wait_child(pid);
	if (timed_out) {
		say("script timed out after %ld s", timeout_s);
		return SCRIPT_TIMEOUT_STATUS;
	}
	return rc;
}

/* ------------------------------------------------------------------ main */

int main(void)
{
	char bench[32];
	int rc;

	early_setup();
	load_modules();
	read_cmdline();
	arg_required("bench", bench, sizeof(bench));

	if (strcmp(bench, "none") == 0) {
		say("UNIKIO-BEGIN");
		rc = 0;
	} else if (strcmp(bench, "blk") == 0) {
		rc = bench_blk();
	} else if (strcmp(bench, "net") == 0) {
		rc = bench_net();
	} else if (strcmp(bench, "script") == 0) {
		rc = bench_script();
	} else {
		fail("unknown bench=%s", bench);
	}
	sync();
	say("UNIKIO-END status=%d", rc);
	finish(rc);
}
