/*
 * runner.c: run an ops script (docs/ops-format.md) on this machine's kernel
 * and print one observation per operation, in the format the model prints.
 *
 * The Python side (freepgt.host) translates a parsed script into numeric
 * lines on stdin:
 *
 *   freepgt-runner 1 MODE REPEAT NOPS        MODE: observe, time or probe
 *   file     LINE INDEX SIZE
 *   mmap     LINE ADDR LEN PROT FLAGS FILE OFFSET   FILE: an index or -1
 *   munmap   LINE ADDR LEN
 *   mprotect LINE ADDR LEN PROT
 *   madvise  LINE ADDR LEN ADVICE
 *   mremap   LINE OLD OLDLEN NEWLEN FLAGS NEWADDR
 *   touch    LINE ADDR LEN WRITE
 *   fork     LINE
 *
 * PROT, FLAGS and ADVICE are the kernel's numeric values; every number is
 * decimal.  stdout gets JSON lines: in observe mode one observation per
 * operation, then always one status line, the last line of the output:
 *
 *   {"status":"ok"}                          (time mode adds "time_ns")
 *   {"status":"error","line":N,"message":"..."}
 *   {"status":"error","line":N,"comparable":false,"message":"..."}
 *   {"status":"unavailable","message":"..."}
 *
 * "comparable":false marks a script the runner refuses or stops because its
 * observations could not be compared with the model's (a range outside the
 * arena, a mapping the kernel placed outside it); any other error is the
 * runner's own failure.
 *
 * Observations are only meaningful if nothing but the script changes the
 * process's page tables.  So everything that could allocate a page table
 * for the runner itself (heap growth, stdio, a first call into a new page of
 * code, stack growth, the signal stack) happens before the baseline VmPTE is
 * read; after it the runner uses raw system calls, static buffers that were
 * written beforehand and code that a warm-up run already executed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if !defined(__x86_64__) || !defined(__linux__)
#error "the host runner is written for Linux on x86_64"
#endif

#define PAGE_SIZE 4096UL
#define PAGE_MASK (~(PAGE_SIZE - 1))
#define ARENA_START 0x100000000000UL
#define ARENA_END 0x200000000000UL

/* The lowest user address that 4-level tables cannot map (TASK_SIZE is one
 * page below it); 5-level tables can. */
#define PROBE_5LEVEL_ADDR 0x800000000000UL

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_MAYMOVE
#define MREMAP_MAYMOVE 1
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

/* Stack that the runner may use after the baseline without growing the
 * stack vma into pages (and perhaps page tables) it never had. */
#define STACK_RESERVE (256 * 1024)
#define ALTSTACK_SIZE (256 * 1024)

/* How many times a fork's child is measured, at most, before two
 * consecutive measurements must have agreed. */
#define CHILD_MEASURE_TRIES 8

enum op_kind { OP_FILE, OP_MMAP, OP_MUNMAP, OP_MPROTECT, OP_MADVISE, OP_MREMAP, OP_TOUCH, OP_FORK };

static const struct {
	const char *name;
	int nargs;
} op_table[] = {
	[OP_FILE] = {"file", 2},
	[OP_MMAP] = {"mmap", 6},
	[OP_MUNMAP] = {"munmap", 2},
	[OP_MPROTECT] = {"mprotect", 3},
	[OP_MADVISE] = {"madvise", 3},
	[OP_MREMAP] = {"mremap", 5},
	[OP_TOUCH] = {"touch", 3},
	[OP_FORK] = {"fork", 0},
};
#define NR_OP_KINDS (sizeof(op_table) / sizeof(op_table[0]))

struct op {
	enum op_kind kind;
	unsigned long line;
	uint64_t a[6];
};

struct script_file {
	int fd;
	uint64_t size;
};

enum mode { MODE_OBSERVE, MODE_TIME, MODE_PROBE };

/* ------------------------------------------------------------ raw syscalls */

/*
 * The memory-management calls go to the kernel directly: libc wrappers add
 * checks of their own (glibc's mremap drops NEWADDR unless MREMAP_FIXED is
 * given) and the comparison is with the kernel, not with libc.  The child of
 * a fork also runs nothing but these, so it touches no code that a baseline
 * child did not touch too.
 */
static inline long raw_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
	long ret;
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define SYS(nr, a1, a2, a3, a4, a5, a6) \
	raw_syscall6((nr), (long)(a1), (long)(a2), (long)(a3), (long)(a4), (long)(a5), (long)(a6))

/* A raw call failed iff it returned -4095..-1 (an address never looks like that). */
static inline int raw_failed(long ret)
{
	return (unsigned long)ret > -4096UL;
}

/** Read up to n bytes, retrying on EINTR; the raw result. */
static long sys_read(int fd, void *buf, size_t n)
{
	long r;

	do
		r = SYS(SYS_read, fd, buf, n, 0, 0, 0);
	while (r == -EINTR);
	return r;
}

/** Write all n bytes (short writes continue); 0 or the raw error. */
static long sys_write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		long r = SYS(SYS_write, fd, buf, n, 0, 0, 0);

		if (r == -EINTR)
			continue;
		if (r < 0)
			return r;
		buf += r;
		n -= (size_t)r;
	}
	return 0;
}

static void sys_close(int fd)
{
	SYS(SYS_close, fd, 0, 0, 0, 0, 0);
}

static __attribute__((noreturn)) void sys_exit_group(int status)
{
	for (;;)
		SYS(SYS_exit_group, status, 0, 0, 0, 0, 0);
}

/** Wait for one child to end; its raw wait4 result. */
static long sys_wait_child(long pid)
{
	int status;
	long r;

	do
		r = SYS(SYS_wait4, pid, &status, 0, 0, 0, 0);
	while (r == -EINTR);
	return r;
}

/* ----------------------------------------------------------- output buffer */

/*
 * Output is built in a static buffer with the appenders below and written
 * with write(2): printf-style formatting may allocate, which would change
 * the runner's own page tables after the baseline.
 */
static char out_buf[1 << 16];
static size_t out_len;
/* During the warm-up, output is built but thrown away. */
static int out_discard;

/** Write the buffered output to stdout and empty the buffer. */
static void out_flush(void)
{
	if (!out_discard && out_len > 0)
		sys_write_all(1, out_buf, out_len);
	out_len = 0;
}

/** Append n bytes to the output, flushing first when they would not fit. */
static void out_bytes(const char *s, size_t n)
{
	if (out_len + n > sizeof(out_buf))
		out_flush();
	while (n > sizeof(out_buf)) {
		/* only a message longer than the whole buffer gets here */
		memcpy(out_buf, s, sizeof(out_buf));
		out_len = sizeof(out_buf);
		out_flush();
		s += sizeof(out_buf);
		n -= sizeof(out_buf);
	}
	memcpy(out_buf + out_len, s, n);
	out_len += n;
}

static void out_str(const char *s)
{
	out_bytes(s, strlen(s));
}

/** Append s as the inside of a JSON string: quotes, backslashes and control bytes escaped. */
static void out_json_chars(const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			out_bytes(esc, 2);
		} else if (c < 0x20) {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			out_bytes(esc, 6);
		} else {
			out_bytes((const char *)&c, 1);
		}
	}
}

/** Format v in base 10 or 16 (lower case) into buf; returns the start of the digits. */
static char *fmt_u64(char buf[24], uint64_t v, unsigned base)
{
	char *p = buf + 23;

	*p = '\0';
	do {
		*--p = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	return p;
}

static void out_u64(uint64_t v)
{
	char buf[24];

	out_str(fmt_u64(buf, v, 10));
}

static void out_i64(int64_t v)
{
	if (v < 0) {
		out_bytes("-", 1);
		out_u64((uint64_t)0 - (uint64_t)v);
	} else {
		out_u64((uint64_t)v);
	}
}

static void out_hex(uint64_t v)
{
	char buf[24];

	out_bytes("0x", 2);
	out_str(fmt_u64(buf, v, 16));
}

/* A small string builder for ret values and messages, also malloc-free. */
struct text {
	char buf[256];
	size_t len;
};

static void text_add(struct text *t, const char *s)
{
	while (*s && t->len + 1 < sizeof(t->buf))
		t->buf[t->len++] = *s++;
	t->buf[t->len] = '\0';
}

static void text_u64(struct text *t, uint64_t v, unsigned base)
{
	char buf[24];

	if (base == 16)
		text_add(t, "0x");
	text_add(t, fmt_u64(buf, v, base));
}

/* ------------------------------------------------------------ status lines */

/** Before a status line: write what the run observed, drop what the warm-up did. */
static void out_drop_discarded(void)
{
	if (out_discard)
		out_len = 0;
	out_discard = 0;
	out_flush();
}

/** Print the final error status line and exit: the run stops at a script line. */
static __attribute__((noreturn)) void fail_status(unsigned long line, int comparable, const char *message)
{
	out_drop_discarded();
	out_str("{\"status\":\"error\",\"line\":");
	out_u64(line);
	if (!comparable)
		out_str(",\"comparable\":false");
	out_str(",\"message\":\"");
	out_json_chars(message);
	out_str("\"}\n");
	out_flush();
	sys_exit_group(1);
}

/** Stop the run at a script line: the runner or the kernel failed. */
static __attribute__((noreturn)) void fail(unsigned long line, const char *message)
{
	fail_status(line, 1, message);
}

/** Stop the run at a script line that cannot be compared with the model. */
static __attribute__((noreturn)) void not_comparable(unsigned long line, const char *message)
{
	fail_status(line, 0, message);
}

/** Print the final status line for a host that cannot run scripts comparably, and exit. */
static __attribute__((noreturn)) void unavailable(const char *message)
{
	out_drop_discarded();
	out_str("{\"status\":\"unavailable\",\"message\":\"");
	out_json_chars(message);
	out_str("\"}\n");
	out_flush();
	sys_exit_group(1);
}

/** Like fail(), for setup errors before the baseline: formats with stdio and errno. */
static __attribute__((noreturn, format(printf, 1, 2))) void setup_fail(const char *fmt, ...)
{
	char message[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	fail(0, message);
}

/* ------------------------------------------------------- reading /proc files */

/*
 * /proc/self/smaps grows with the number of vmas, so it is read in pieces
 * through one static buffer and handed out line by line.
 */
static char line_buf[1 << 16];

struct line_reader {
	int fd;
	size_t start, end;
	int eof;
};

/** Open path for line_next(); 0 or the raw error. */
static long lines_open(struct line_reader *lr, const char *path)
{
	long fd = SYS(SYS_open, path, O_RDONLY | O_CLOEXEC, 0, 0, 0, 0);

	if (fd < 0)
		return fd;
	lr->fd = (int)fd;
	lr->start = lr->end = 0;
	lr->eof = 0;
	return 0;
}

/**
 * The next line (NUL-terminated, without its newline) or NULL at the end.
 * A line longer than the buffer comes back in buffer-sized pieces.
 */
static char *line_next(struct line_reader *lr)
{
	for (;;) {
		char *line = line_buf + lr->start;
		char *nl = memchr(line, '\n', lr->end - lr->start);

		if (nl) {
			*nl = '\0';
			lr->start = (size_t)(nl - line_buf) + 1;
			return line;
		}
		/* no whole line is left: move the partial one to the front */
		memmove(line_buf, line, lr->end - lr->start);
		lr->end -= lr->start;
		lr->start = 0;
		if (lr->eof || lr->end == sizeof(line_buf) - 1) {
			/* the last line, without a newline, or a piece of an overlong one */
			if (lr->end == 0)
				return NULL;
			line_buf[lr->end] = '\0';
			lr->start = lr->end;
			return line_buf;
		}
		long r = sys_read(lr->fd, line_buf + lr->end, sizeof(line_buf) - 1 - lr->end);
		if (r <= 0)
			lr->eof = 1;
		else
			lr->end += (size_t)r;
	}
}

static void lines_close(struct line_reader *lr)
{
	sys_close(lr->fd);
}

/** Parse hex digits at *p, advancing past them. */
static uint64_t parse_hex(const char **p)
{
	uint64_t v = 0;

	for (;; (*p)++) {
		char c = **p;

		if (c >= '0' && c <= '9')
			v = v * 16 + (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v * 16 + (uint64_t)(c - 'a' + 10);
		else
			return v;
	}
}

/** Parse the decimal number after optional blanks at p (the "12 kB" of /proc). */
static uint64_t parse_kb(const char *p)
{
	uint64_t v = 0;

	while (*p == ' ' || *p == '\t')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (uint64_t)(*p - '0');
	return v;
}

/** VmPTE of a /proc/PID/status file in bytes, or -1 when it cannot be read. */
static int64_t read_vmpte(const char *status_path)
{
	struct line_reader lr;
	int64_t bytes = -1;
	char *line;

	if (lines_open(&lr, status_path) < 0)
		return -1;
	while ((line = line_next(&lr)) != NULL) {
		if (strncmp(line, "VmPTE:", 6) == 0) {
			bytes = (int64_t)parse_kb(line + 6) * 1024;
			break;
		}
	}
	lines_close(&lr);
	return bytes;
}

/**
 * Parse a maps/smaps header line "START-END PERMS ..." into its fields;
 * 0 when the line is not one (the smaps field lines start "Name:").
 */
static int parse_vma_header(const char *line, uint64_t *start, uint64_t *end, const char **perms)
{
	const char *p = line;

	*start = parse_hex(&p);
	if (p == line || *p != '-')
		return 0;
	p++;
	const char *q = p;
	*end = parse_hex(&p);
	if (p == q || *p != ' ' || strlen(p) < 5 || p[5] != ' ')
		return 0;
	*perms = p + 1;
	return 1;
}

/**
 * Append the arena's vmas as a JSON list and return the sum of their Rss in
 * bytes, from one read of /proc/self/smaps (whose headers are the maps lines).
 * Returns -1 when smaps cannot be read.
 */
static int64_t out_arena_vmas(void)
{
	struct line_reader lr;
	uint64_t rss = 0;
	int in_arena = 0, first = 1;
	char *line;

	if (lines_open(&lr, "/proc/self/smaps") < 0)
		return -1;
	out_bytes("[", 1);
	while ((line = line_next(&lr)) != NULL) {
		uint64_t start, end;
		const char *perms;

		if (parse_vma_header(line, &start, &end, &perms)) {
			in_arena = start >= ARENA_START && end <= ARENA_END;
			if (in_arena) {
				out_str(first ? "[\"" : ",[\"");
				out_hex(start);
				out_str("\",\"");
				out_hex(end);
				out_str("\",\"");
				out_bytes(perms, 4);
				out_str("\"]");
				first = 0;
			}
		} else if (in_arena && strncmp(line, "Rss:", 4) == 0) {
			rss += parse_kb(line + 4) * 1024;
		}
	}
	lines_close(&lr);
	out_bytes("]", 1);
	return (int64_t)rss;
}

/** Whether any vma of this process overlaps the arena (-1: maps unreadable). */
static int arena_has_vmas(void)
{
	struct line_reader lr;
	int found = 0;
	char *line;

	if (lines_open(&lr, "/proc/self/maps") < 0)
		return -1;
	while ((line = line_next(&lr)) != NULL) {
		uint64_t start, end;
		const char *perms;

		if (parse_vma_header(line, &start, &end, &perms) && start < ARENA_END && end > ARENA_START)
			found = 1;
	}
	lines_close(&lr);
	return found;
}

/* ------------------------------------------------------------ fault capture */

static sigjmp_buf touch_env;
static volatile sig_atomic_t touch_armed;
static volatile int fault_signo;
static volatile uintptr_t fault_addr;
static char altstack[ALTSTACK_SIZE];

/*
 * SIGSEGV and SIGBUS during a touch end the touch: jump back with the
 * signal and address.  Anywhere else they are the runner's own bug, so the
 * default action is restored and the faulting access, retried on return,
 * kills the runner (which the Python side reports as a crash).
 */
static void on_fault(int signo, siginfo_t *info, void *ucontext)
{
	(void)ucontext;
	if (!touch_armed) {
		signal(signo, SIG_DFL);
		return;
	}
	touch_armed = 0;
	fault_signo = signo;
	fault_addr = (uintptr_t)info->si_addr;
	siglongjmp(touch_env, 1);
}

/** One access at addr, then one at the start of every following page below end. */
static __attribute__((noinline)) void touch_pages(uint64_t addr, uint64_t end, int write)
{
	for (uint64_t p = addr;;) {
		if (write)
			*(volatile char *)p = 1;
		else
			(void)*(volatile char *)p;
		p = (p & PAGE_MASK) + PAGE_SIZE;
		if (p >= end)
			break;
	}
}

/**
 * The touch op: one access at addr, then one at the start of every
 * following page overlapping [addr, addr+len), lowest first.  Returns 0, or
 * the signal that stopped it with *where set to the page-aligned address.
 */
static int do_touch(uint64_t addr, uint64_t len, int write, uint64_t *where)
{
	if (len == 0)
		return 0;
	/*
	 * sigsetjmp without saving the mask: the handler runs with SA_NODEFER
	 * and an empty sa_mask, so leaving it changes no mask and the touch
	 * costs no system call of its own.
	 */
	if (sigsetjmp(touch_env, 0)) {
		*where = fault_addr & PAGE_MASK;
		return fault_signo;
	}
	touch_armed = 1;
	touch_pages(addr, addr + len, write);
	touch_armed = 0;
	return 0;
}

/* -------------------------------------------------------------------- fork */

static char child_status_path[64];

/**
 * Fork once and return the child's VmPTE in bytes (-1 on failure).
 *
 * The child tells the parent it is ready, then waits for leave to exit.
 * The parent reads /proc/CHILD/status in between, so the child is measured
 * after its own few faults (its stack and this function's code), never in
 * the middle of them.  The child runs only raw system calls, and every
 * measurement, the baseline child's included, runs this same code.
 */
static int64_t child_vmpte_once(void)
{
	int ready[2], go[2];
	char c = 0;

	if (SYS(SYS_pipe2, ready, O_CLOEXEC, 0, 0, 0, 0) < 0)
		return -1;
	if (SYS(SYS_pipe2, go, O_CLOEXEC, 0, 0, 0, 0) < 0) {
		sys_close(ready[0]);
		sys_close(ready[1]);
		return -1;
	}
	long pid = SYS(SYS_fork, 0, 0, 0, 0, 0, 0);
	if (pid == 0) {
		SYS(SYS_write, ready[1], &c, 1, 0, 0, 0);
		SYS(SYS_read, go[0], &c, 1, 0, 0, 0);
		sys_exit_group(0);
	}
	sys_close(ready[1]);
	sys_close(go[0]);
	int64_t vmpte = -1;
	if (pid > 0) {
		/* EOF instead of the byte: the child died before it was ready */
		if (sys_read(ready[0], &c, 1) == 1) {
			struct text path = {.len = 0};

			text_add(&path, "/proc/");
			text_u64(&path, (uint64_t)pid, 10);
			text_add(&path, "/status");
			memcpy(child_status_path, path.buf, path.len + 1);
			vmpte = read_vmpte(child_status_path);
		}
		sys_write_all(go[1], &c, 1);
	}
	sys_close(ready[0]);
	sys_close(go[1]);
	if (pid > 0)
		sys_wait_child(pid);
	return vmpte;
}

/**
 * A fork's child VmPTE in bytes, measured until two consecutive forks agree
 * (-1 if they never do).  Extra forks change nothing the observations show:
 * each child has exited before the next operation.
 */
static int64_t child_vmpte(void)
{
	int64_t prev = child_vmpte_once();

	for (int i = 1; i < CHILD_MEASURE_TRIES; i++) {
		int64_t v = child_vmpte_once();

		if (v >= 0 && v == prev)
			return v;
		prev = v;
	}
	return -1;
}

/** The fork op without a measurement (time mode): the child exits at once. */
static int fork_and_reap(void)
{
	long pid = SYS(SYS_fork, 0, 0, 0, 0, 0, 0);

	if (pid == 0)
		sys_exit_group(0);
	if (pid < 0)
		return -1;
	sys_wait_child(pid);
	return 0;
}

/* ----------------------------------------------------------------- the run */

static struct script_file *files;
static size_t nr_files;
static int64_t baseline_vmpte;
static int64_t baseline_child_vmpte;

/**
 * Whether [addr, addr + len) lies in the arena, len first rounded up to
 * pages when round is set (as the kernel rounds lengths); with len 0, whether
 * addr does.
 */
static int in_arena(uint64_t addr, uint64_t len, int round)
{
	uint64_t span = round ? (len + PAGE_SIZE - 1) & PAGE_MASK : len;

	if (addr < ARENA_START || addr >= ARENA_END)
		return 0;
	if (span < len)
		return 0; /* rounding wrapped */
	return span <= ARENA_END - addr;
}

/**
 * Whether every address range that op names lies in the arena (the same
 * rule as freepgt.host's check, kept here so that the runner never touches
 * or unmaps its own memory whoever feeds it).
 */
static int op_in_arena(const struct op *op)
{
	const uint64_t *a = op->a;

	switch (op->kind) {
	case OP_MMAP:
	case OP_MUNMAP:
	case OP_MPROTECT:
	case OP_MADVISE:
		return in_arena(a[0], a[1], 1);
	case OP_TOUCH:
		return in_arena(a[0], a[1], 0);
	case OP_MREMAP:
		if (!in_arena(a[0], a[1], 1))
			return 0;
		if (a[3] & MREMAP_FIXED)
			return in_arena(a[4], a[2], 1);
		/* without a fixed target the vma may grow in place */
		if (!in_arena(a[0], a[2], 1))
			return 0;
		return !(a[3] & MREMAP_DONTUNMAP) || a[4] == 0 || in_arena(a[4], a[2], 1);
	default:
		return 1;
	}
}

/** Stop the run: the kernel put a mapping outside the arena, so nothing after is comparable. */
static __attribute__((noreturn)) void placed_outside(const struct op *op, uint64_t addr)
{
	struct text t = {.len = 0};

	text_add(&t, "the kernel placed the mapping at ");
	text_u64(&t, addr, 16);
	text_add(&t, ", outside the arena [0x100000000000, 0x200000000000): not comparable");
	not_comparable(op->line, t.buf);
}

/** The ret value of a raw call as text: the address, "0", or "-ERRNO" in decimal. */
static void ret_of(struct text *ret, long r, int is_address)
{
	if (raw_failed(r)) {
		text_add(ret, "-");
		text_u64(ret, (uint64_t)-r, 10);
	} else if (is_address) {
		text_u64(ret, (uint64_t)r, 16);
	} else {
		text_add(ret, "0");
	}
}

/**
 * Carry out one operation.  Sets ret to the observation's ret text and
 * *child to the child's page-table bytes for a measured fork (else -1).
 */
static void run_op(const struct op *op, int measure, struct text *ret, int64_t *child)
{
	const uint64_t *a = op->a;
	long r;

	ret->len = 0;
	ret->buf[0] = '\0';
	*child = -1;
	switch (op->kind) {
	case OP_FILE:
		/* created before the baseline; a fresh sparse file is what the line asks for */
		text_add(ret, "0");
		return;
	case OP_MMAP: {
		int64_t index = (int64_t)a[4];
		int fd = index < 0 ? -1 : files[index].fd;

		r = SYS(SYS_mmap, a[0], a[1], a[2], a[3], fd, a[5]);
		if (!raw_failed(r) && !in_arena((uint64_t)r, a[1], 1))
			placed_outside(op, (uint64_t)r);
		ret_of(ret, r, 1);
		return;
	}
	case OP_MUNMAP:
		ret_of(ret, SYS(SYS_munmap, a[0], a[1], 0, 0, 0, 0), 0);
		return;
	case OP_MPROTECT:
		ret_of(ret, SYS(SYS_mprotect, a[0], a[1], a[2], 0, 0, 0), 0);
		return;
	case OP_MADVISE:
		ret_of(ret, SYS(SYS_madvise, a[0], a[1], a[2], 0, 0, 0), 0);
		return;
	case OP_MREMAP:
		r = SYS(SYS_mremap, a[0], a[1], a[2], a[3], a[4], 0);
		if (!raw_failed(r) && !in_arena((uint64_t)r, a[2], 1))
			placed_outside(op, (uint64_t)r);
		ret_of(ret, r, 1);
		return;
	case OP_TOUCH: {
		uint64_t where;
		int signo = do_touch(a[0], a[1], (int)a[2], &where);

		if (signo == 0) {
			text_add(ret, "0");
		} else {
			text_add(ret, signo == SIGBUS ? "SIGBUS@" : "SIGSEGV@");
			text_u64(ret, where, 16);
		}
		return;
	}
	case OP_FORK:
		if (measure) {
			int64_t v = child_vmpte();

			if (v < 0)
				fail(op->line, "fork: could not measure the child's page tables "
					       "(fork failed, or no two measurements agreed)");
			*child = v - baseline_child_vmpte;
		} else if (fork_and_reap() < 0) {
			fail(op->line, "fork failed");
		}
		text_add(ret, "0");
		return;
	}
}

/** Append the observation after op to the output (see docs/ops-format.md). */
static void observe(const struct op *op, const struct text *ret, int64_t child)
{
	int64_t vmpte = read_vmpte("/proc/self/status");

	if (vmpte < 0)
		fail(op->line, "cannot read VmPTE from /proc/self/status");
	out_str("{\"line\":");
	out_u64(op->line);
	out_str(",\"op\":\"");
	out_str(op_table[op->kind].name);
	out_str("\",\"ret\":\"");
	out_str(ret->buf);
	out_str("\",\"vmas\":");
	int64_t rss = out_arena_vmas();
	if (rss < 0)
		fail(op->line, "cannot read /proc/self/smaps");
	out_str(",\"pgtables\":");
	out_i64(vmpte - baseline_vmpte);
	out_str(",\"rss\":");
	out_i64(rss);
	if (child >= 0 || op->kind == OP_FORK) {
		out_str(",\"child_pgtables\":");
		out_i64(child);
	}
	out_str("}\n");
}

/** Remove everything in the arena; the raw munmap result. */
static long clear_arena(void)
{
	return SYS(SYS_munmap, ARENA_START, ARENA_END - ARENA_START, 0, 0, 0, 0);
}

/**
 * After the script: with the arena emptied, VmPTE must be back at the
 * baseline.  Anything else means the runner's own page tables changed
 * during the run and every pgtables value is in doubt.  A failure is
 * reported at line 0: it belongs to no script line.
 */
static void self_check(void)
{
	if (clear_arena() != 0)
		fail(0, "self-check: munmap of the whole arena failed");
	int64_t vmpte = read_vmpte("/proc/self/status");
	if (vmpte != baseline_vmpte) {
		struct text t = {.len = 0};

		text_add(&t, "self-check: with the arena empty, VmPTE is ");
		text_u64(&t, (uint64_t)vmpte, 10);
		text_add(&t, " bytes, not the baseline's ");
		text_u64(&t, (uint64_t)baseline_vmpte, 10);
		text_add(&t, ": the runner's own page tables changed during the run");
		fail(0, t.buf);
	}
	if (arena_has_vmas() != 0)
		fail(0, "self-check: the arena is not empty after munmap of all of it");
}

/** Give every script file back its fresh state: sparse, nothing in its page cache. */
static void reset_files(void)
{
	for (size_t i = 0; i < nr_files; i++) {
		if (SYS(SYS_ftruncate, files[i].fd, 0, 0, 0, 0, 0) != 0 ||
		    SYS(SYS_ftruncate, files[i].fd, files[i].size, 0, 0, 0, 0) != 0)
			fail(0, "cannot reset a script file between repeats");
	}
}

/* ------------------------------------------------------------------- setup */

/** Read all of stdin into a NUL-terminated heap buffer (before the baseline). */
static char *read_input(void)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);

	if (!buf)
		setup_fail("out of memory reading the script");
	for (;;) {
		if (len + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				setup_fail("out of memory reading the script");
		}
		ssize_t r = read(0, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			setup_fail("cannot read the script: %s", strerror(errno));
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	return buf;
}

/** Parse one unsigned (or, for the file index, -1) decimal field; advance past it. */
static int parse_field(char **p, uint64_t *v)
{
	char *end;

	errno = 0;
	if (**p == '-')
		*v = (uint64_t)strtoll(*p, &end, 10);
	else
		*v = strtoull(*p, &end, 10);
	if (end == *p || errno != 0 || (*end != ' ' && *end != '\0'))
		return 0;
	*p = end;
	while (**p == ' ')
		(*p)++;
	return 1;
}

/** Parse the input (header and op lines) into ops; the header's mode and repeat come back. */
static struct op *parse_input(char *text, size_t *nr_ops, enum mode *mode, uint64_t *repeat)
{
	char *save = NULL;
	char *line = strtok_r(text, "\n", &save);
	char mode_name[16];
	unsigned long version, count;

	if (!line || sscanf(line, "freepgt-runner %lu %15s %lu %lu", &version, mode_name, repeat, &count) != 4 ||
	    version != 1)
		setup_fail("bad input header (expected 'freepgt-runner 1 MODE REPEAT NOPS')");
	if (strcmp(mode_name, "observe") == 0)
		*mode = MODE_OBSERVE;
	else if (strcmp(mode_name, "time") == 0)
		*mode = MODE_TIME;
	else if (strcmp(mode_name, "probe") == 0)
		*mode = MODE_PROBE;
	else
		setup_fail("bad mode '%s'", mode_name);

	struct op *ops = calloc(count ? count : 1, sizeof(*ops));
	if (!ops)
		setup_fail("out of memory for %lu operations", count);
	size_t n = 0;
	while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
		char *p = line;
		size_t kind;
		uint64_t v;

		if (n == count)
			setup_fail("more operation lines than the header's %lu", count);
		for (kind = 0; kind < NR_OP_KINDS; kind++) {
			size_t len = strlen(op_table[kind].name);

			if (strncmp(p, op_table[kind].name, len) == 0 && p[len] == ' ')
				break;
		}
		if (kind == NR_OP_KINDS)
			setup_fail("bad input line: %s", line);
		p += strlen(op_table[kind].name) + 1;
		ops[n].kind = (enum op_kind)kind;
		if (!parse_field(&p, &v))
			setup_fail("bad input line: %s", line);
		ops[n].line = (unsigned long)v;
		for (int i = 0; i < op_table[kind].nargs; i++)
			if (!parse_field(&p, &ops[n].a[i]))
				setup_fail("bad input line: %s", line);
		if (*p != '\0')
			setup_fail("bad input line: %s", line);
		n++;
	}
	if (n != count)
		setup_fail("%zu operation lines, but the header says %lu", n, count);
	*nr_ops = n;
	return ops;
}

/**
 * Create a fresh sparse file of size bytes on tmpfs, already unlinked so
 * that it goes away with the runner however it ends.  /dev/shm is used when
 * it is a tmpfs that allows PROT_EXEC mappings; otherwise a memfd, which is
 * a file on the kernel's internal tmpfs.
 */
static int create_tmpfs_file(uint64_t size, size_t index)
{
	static int use_dev_shm = -1;
	struct statfs sfs;
	struct statvfs svfs;
	int fd = -1;

	if (use_dev_shm < 0)
		use_dev_shm = statfs("/dev/shm", &sfs) == 0 && sfs.f_type == TMPFS_MAGIC &&
			      statvfs("/dev/shm", &svfs) == 0 && !(svfs.f_flag & (ST_NOEXEC | ST_RDONLY));
	if (use_dev_shm) {
		char path[96];

		snprintf(path, sizeof(path), "/dev/shm/freepgt-runner-%ld-%zu", (long)getpid(), index);
		unlink(path); /* a leftover of an earlier runner with this pid */
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0)
		fd = (int)syscall(SYS_memfd_create, "freepgt-runner", MFD_CLOEXEC);
	if (fd < 0)
		setup_fail("cannot create a tmpfs file: %s", strerror(errno));
	if (size > (uint64_t)INT64_MAX || ftruncate(fd, (off_t)size) != 0)
		setup_fail("cannot make a tmpfs file of %llu bytes: %s", (unsigned long long)size,
			   size > (uint64_t)INT64_MAX ? "too large" : strerror(errno));
	return fd;
}

/** Write to every page of the static buffers the run uses, so none faults later. */
static void pretouch_buffers(void)
{
	memset(out_buf, 0, sizeof(out_buf));
	memset(line_buf, 0, sizeof(line_buf));
	memset(altstack, 0, sizeof(altstack));
	memset(child_status_path, 0, sizeof(child_status_path));
}

/** Use STACK_RESERVE bytes of stack now, so the run never grows the stack into new pages. */
static __attribute__((noinline)) void pretouch_stack(void)
{
	volatile char pad[STACK_RESERVE];

	for (size_t i = 0; i < sizeof(pad); i += PAGE_SIZE)
		pad[i] = 0;
	pad[sizeof(pad) - 1] = 0;
}

/*
 * The runner's own image, from its ELF header to the end of its bss (the
 * linker defines both symbols).  Reading one byte of every page gives the
 * code and data the page tables they will ever need.
 */
extern const char __ehdr_start[];
extern char _end[];

static void pretouch_image(void)
{
	uint64_t where;

	for (uint64_t p = (uint64_t)__ehdr_start & PAGE_MASK; p < (uint64_t)_end; p += PAGE_SIZE)
		do_touch(p, 1, 0, &where); /* a gap between segments just faults */
}

static void install_fault_handlers(void)
{
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0};
	struct sigaction sa;

	if (sigaltstack(&ss, NULL) != 0)
		setup_fail("sigaltstack: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) != 0 || sigaction(SIGBUS, &sa, NULL) != 0)
		setup_fail("sigaction: %s", strerror(errno));
}

/**
 * Refuse a host whose tables are not 4-level.  With 5-level tables user
 * space may reach past 47 bits, so a fixed mapping just above them succeeds;
 * with 4-level tables it is beyond TASK_SIZE and fails with ENOMEM.  (A
 * kernel that ignores MAP_FIXED_NOREPLACE treats it as a hint and maps
 * elsewhere, which also says 4-level.)
 */
static void check_4level(void)
{
	long r = SYS(SYS_mmap, PROBE_5LEVEL_ADDR, PAGE_SIZE, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (raw_failed(r))
		return;
	SYS(SYS_munmap, r, PAGE_SIZE, 0, 0, 0, 0);
	if ((uint64_t)r == PROBE_5LEVEL_ADDR)
		unavailable("this kernel uses 5-level page tables (user space beyond 47 bits); "
			    "the comparison needs 4-level tables");
}

/*
 * A warm-up script run before the baseline, through the same code as the
 * real run with its output thrown away: every system call, the fault
 * handler's jump, a file mapping, /proc parsing and fork measurement run
 * once, so their first use cannot allocate page tables for the runner later.
 */
static void warm_up(int warm_fd_index)
{
	const uint64_t B = ARENA_START;
	const uint64_t anon_fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
	const struct op ops[] = {
		{OP_MMAP, 0, {B, 8192, PROT_READ | PROT_WRITE, anon_fixed, (uint64_t)-1, 0}},
		{OP_TOUCH, 0, {B, 8192, 1}},
		{OP_MPROTECT, 0, {B, 4096, PROT_READ}},
		{OP_TOUCH, 0, {B, 4096, 1}},
		{OP_MADVISE, 0, {B, 8192, MADV_DONTNEED}},
		{OP_MREMAP, 0, {B, 8192, 8192, MREMAP_MAYMOVE | MREMAP_FIXED, B + (2UL << 20)}},
		{OP_MMAP, 0, {B + (1UL << 30), 8192, PROT_READ, MAP_SHARED | MAP_FIXED, (uint64_t)warm_fd_index, 0}},
		{OP_TOUCH, 0, {B + (1UL << 30), 8192, 0}},
		{OP_FORK, 0, {0}},
		{OP_MUNMAP, 0, {B, 1UL << 31}},
	};
	struct text ret;
	int64_t child;
	struct timespec ts;

	out_discard = 1;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		run_op(&ops[i], 1, &ret, &child);
		observe(&ops[i], &ret, child);
	}
	out_flush();
	out_discard = 0;
	if (fork_and_reap() < 0)
		setup_fail("fork failed during the warm-up");
	reset_files();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (clear_arena() != 0)
		setup_fail("munmap of the arena after the warm-up failed");
}

int main(void)
{
	enum mode mode;
	uint64_t repeat;
	size_t nr_ops;

	/* no transparent huge pages: every table the notes count is a 4 KiB one */
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
		unavailable("prctl(PR_SET_THP_DISABLE) failed: transparent huge pages cannot be turned off");
	struct op *ops = parse_input(read_input(), &nr_ops, &mode, &repeat);

	check_4level();
	int busy = arena_has_vmas();
	if (busy < 0)
		unavailable("cannot read /proc/self/maps");
	if (busy)
		unavailable("something is already mapped in the arena [0x100000000000, 0x200000000000)");

	/* one file per 'file' line (the index is its order), plus one for the warm-up */
	for (size_t i = 0; i < nr_ops; i++)
		if (ops[i].kind == OP_FILE)
			nr_files++;
	files = calloc(nr_files + 1, sizeof(*files));
	if (!files)
		setup_fail("out of memory for the script's files");
	for (size_t i = 0, k = 0; i < nr_ops; i++) {
		if (ops[i].kind != OP_FILE)
			continue;
		if (ops[i].a[0] != k)
			setup_fail("file index %llu out of order", (unsigned long long)ops[i].a[0]);
		files[k].size = ops[i].a[1];
		files[k].fd = create_tmpfs_file(files[k].size, k);
		k++;
	}
	for (size_t i = 0; i < nr_ops; i++) {
		if (ops[i].kind == OP_MMAP && ((int64_t)ops[i].a[4] < -1 || (int64_t)ops[i].a[4] >= (int64_t)nr_files))
			setup_fail("line %lu: file index out of range", ops[i].line);
	}
	files[nr_files].size = PAGE_SIZE;
	files[nr_files].fd = create_tmpfs_file(PAGE_SIZE, nr_files);

	/* every named range must lie in the arena: the runner must not touch its own memory */
	for (size_t i = 0; i < nr_ops; i++)
		if (!op_in_arena(&ops[i]))
			not_comparable(ops[i].line, "an address range of this line lies outside the arena");

	pretouch_buffers();
	install_fault_handlers();
	pretouch_stack();
	pretouch_image();
	warm_up((int)nr_files);

	/*
	 * The baseline: the runner's VmPTE and a child's with the arena empty.
	 * If taking it changed VmPTE, something was not warmed up yet; the
	 * second round then starts from the settled state.
	 */
	for (int round = 0;; round++) {
		baseline_vmpte = read_vmpte("/proc/self/status");
		baseline_child_vmpte = child_vmpte();
		if (baseline_vmpte < 0 || baseline_child_vmpte < 0)
			unavailable("cannot read VmPTE from /proc/PID/status");
		if (read_vmpte("/proc/self/status") == baseline_vmpte)
			break;
		if (round == 2)
			fail(0, "the runner's own VmPTE does not settle before the run");
	}

	struct text ret;
	int64_t child;

	if (mode == MODE_OBSERVE) {
		for (size_t i = 0; i < nr_ops; i++) {
			run_op(&ops[i], 1, &ret, &child);
			observe(&ops[i], &ret, child);
		}
		self_check();
		out_str("{\"status\":\"ok\"}\n");
	} else if (mode == MODE_TIME) {
		uint64_t total_ns = 0;

		for (uint64_t rep = 0; rep < repeat; rep++) {
			struct timespec t0, t1;

			if (rep > 0) {
				if (clear_arena() != 0)
					fail(0, "munmap of the arena between repeats failed");
				reset_files();
			}
			clock_gettime(CLOCK_MONOTONIC, &t0);
			for (size_t i = 0; i < nr_ops; i++)
				run_op(&ops[i], 0, &ret, &child);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			total_ns += (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec));
		}
		self_check();
		out_str("{\"status\":\"ok\",\"time_ns\":");
		out_u64(total_ns);
		out_str("}\n");
	} else {
		self_check();
		out_str("{\"status\":\"ok\"}\n");
	}
	out_flush();
	sys_exit_group(0);
}
