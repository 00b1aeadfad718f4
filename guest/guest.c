/* SPDX-License-Identifier: MIT */
/*
 * The test guest: a freestanding 64-bit program that is its own firmware
 * (qemu -bios, see boot.S) and checks its own memory across a live migration.
 *
 * Command line (QEMU -fw_cfg name=opt/rdmamig/cmdline,string="..."):
 *   mem=MiB rate=PAGES_PER_S hb=MS
 *
 * It fills mem MiB from 16 MiB up with pages that each describe themselves:
 *   word 0 magic, word 1 page index, word 2 generation, words 3.. a word
 *   derived from (index, generation), repeated.
 * A table at 8 MiB holds the generation each page was last written with.
 * The guest then rewrites pages at `rate` pages per second (generation + 1,
 * round robin), prints a heartbeat every hb ms on COM1, and on a 'v' read
 * from COM1 checks every page: a page is wrong if it is not self-consistent
 * (torn or foreign content) or if its generation is not the one the table
 * says was written last (a dirty page the migration lost: the destination
 * holds an older, still self-consistent copy).  The table itself is guest
 * memory that is dirtied with every page, so losing a table page shows too.
 *
 * Lines it prints (the host scripts parse them):
 *   READY pages=N mib=M rate=R hb=H
 *   HB n=COUNT t=TICKS dirtied=PAGES
 *   CHECK n=COUNT bad=B pages=N dirtied=PAGES ms=DURATION
 */
#include <stdint.h>

#define PAGE 4096u
#define WORDS (PAGE / 4u)
#define TABLE_BASE 0x00800000u /* 8 MiB: generation per page */
#define PAGES_BASE 0x01000000u /* 16 MiB */
#define PAGE_MAGIC 0x50474d52u /* "RMGP" */
#define COM1 0x3f8
#define FW_CFG_SEL 0x510
#define FW_CFG_DATA 0x511
#define PIT_HZ 1193182u
#define TICK_HZ 1000u
#define LAPIC_BASE 0xfee00000u

volatile uint32_t guest_ticks; /* 1 ms PIT ticks, bumped by irq0_entry */

void irq0_entry(void);
void spurious_entry(void);
void syscall_entry(void);
void ud_entry(void);
void trap_entry(void);
void trap_stubs(void);

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* ---- serial ------------------------------------------------------------ */

static void serial_init(void)
{
	outb(COM1 + 1, 0x00); /* no interrupts: we poll */
	outb(COM1 + 3, 0x80); /* divisor latch */
	outb(COM1 + 0, 0x01); /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03); /* 8N1 */
	outb(COM1 + 2, 0xc7); /* FIFO on, cleared */
	outb(COM1 + 4, 0x03); /* DTR, RTS */
}

enum { SYS_IDLE, SYS_PUTC, SYS_GETC };
static int syscalls_ready; /* the IDT is up: port I/O goes through int 0x80 */

static long sys(long op, long arg)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "D"(op), "S"(arg) : "memory");
	return ret;
}

static void putc_raw(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (uint8_t)c);
}

static void putc_(char c)
{
	if (syscalls_ready)
		sys(SYS_PUTC, c);
	else
		putc_raw(c);
}

static void puts_(const char *s)
{
	while (*s)
		putc_(*s++);
}

static void putu(uint32_t v)
{
	char buf[12];
	int i = 0;

	do {
		buf[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		putc_(buf[--i]);
}

static void kv(const char *key, uint32_t v)
{
	puts_(key);
	putu(v);
}

static int serial_getc(void)
{
	return (int)sys(SYS_GETC, 0);
}

/* Ring 0 side of int 0x80 (boot.S: syscall_entry); interrupts are off here. */
long guest_syscall(long op, long arg);
long guest_syscall(long op, long arg)
{
	switch (op) {
	case SYS_PUTC:
		putc_raw((char)arg);
		return 0;
	case SYS_GETC:
		return inb(COM1 + 5) & 0x01 ? inb(COM1) : -1;
	default:
		__asm__ volatile("sti; hlt; cli"); /* until the next tick */
		return 0;
	}
}

void guest_trap(uint32_t vector, uint64_t w0, uint64_t w1);
void guest_trap(uint32_t vector, uint64_t w0, uint64_t w1)
{
	syscalls_ready = 0; /* ring 0 here: print directly */
	kv("\nTRAP vector=", vector);
	kv(" frame0=", (uint32_t)w0);
	kv(" frame1=", (uint32_t)w1);
	puts_(": unexpected interrupt or exception, guest stopped\n");
}

/* ---- interrupts: a 1 kHz PIT tick so the idle guest halts ---------------- */

struct idt_entry {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_entry idt[256];

static void idt_set(int n, void (*fn)(void))
{
	uint64_t a = (uint64_t)(uintptr_t)fn;

	idt[n] = (struct idt_entry){ (uint16_t)a, 0x18, 0, 0x8e, (uint16_t)(a >> 16),
				     (uint32_t)(a >> 32), 0 };
}

static void interrupts_init(void)
{
	struct { uint16_t len; uint64_t base; } __attribute__((packed)) d = {
		sizeof(idt) - 1, (uint64_t)(uintptr_t)idt
	};
	uint16_t div = (uint16_t)(PIT_HZ / TICK_HZ);
	volatile uint32_t *lapic = (volatile uint32_t *)(uintptr_t)LAPIC_BASE;

	for (int i = 0; i < 256; i++)
		idt_set(i, i < 32 ? (void (*)(void))(uintptr_t)((uintptr_t)trap_stubs + 16 * i)
				  : trap_entry);
	idt_set(0x20, irq0_entry);
	idt_set(0x27, spurious_entry); /* the 8259's spurious IRQ7 */
	idt_set(0xff, spurious_entry);
	idt_set(6, ud_entry);
	idt_set(0x80, syscall_entry);
	idt[0x80].type = 0xee; /* callable from ring 3 */
	__asm__ volatile("lidt %0" : : "m"(d));
	/* PIC: IRQ 0-7 at vectors 0x20-0x27, 8-15 at 0x28; only IRQ0 unmasked. */
	outb(0x20, 0x11); outb(0xa0, 0x11);
	outb(0x21, 0x20); outb(0xa1, 0x28);
	outb(0x21, 0x04); outb(0xa1, 0x02);
	outb(0x21, 0x01); outb(0xa1, 0x01);
	outb(0x21, 0xfe); outb(0xa1, 0xff);
	/*
	 * Local APIC: software-enabled, LINT0 as ExtINT so the 8259's interrupts
	 * reach the CPU (after reset LINT0 is masked; firmware normally does this).
	 */
	lapic[0xf0 / 4] = 0x1ff;  /* spurious vector 0xff, enabled */
	lapic[0x350 / 4] = 0x700; /* LINT0: ExtINT */
	lapic[0x360 / 4] = 0x400; /* LINT1: NMI */
	/* PIT channel 0, rate generator. */
	outb(0x43, 0x34);
	outb(0x40, (uint8_t)div);
	outb(0x40, (uint8_t)(div >> 8));
	syscalls_ready = 1;
	__asm__ volatile("sti");
}

/* ---- the pages ----------------------------------------------------------- */

static uint32_t npages;

static inline uint32_t *page(uint32_t i)
{
	return (uint32_t *)(uintptr_t)(PAGES_BASE + (uint64_t)i * PAGE);
}

static inline uint32_t *table(void)
{
	return (uint32_t *)(uintptr_t)TABLE_BASE;
}

static inline uint32_t seed_of(uint32_t idx, uint32_t gen)
{
	uint32_t x = idx * 0x9e3779b1u ^ gen * 0x85ebca77u;

	x ^= x >> 15;
	x *= 0x2c1b3c6du;
	return x ^ (x >> 12);
}

/*
 * The body is one repeated word so that a single string instruction writes
 * or checks it: the host's hypervisor emulates this guest instruction by
 * instruction, and a rep stos/scas is one emulation step for a whole page.
 */
static void write_page(uint32_t idx, uint32_t gen)
{
	uint32_t *p = page(idx), *body = p + 3;
	uint64_t n = WORDS - 3;

	p[0] = PAGE_MAGIC;
	p[1] = idx;
	p[2] = gen;
	__asm__ volatile("rep stosl" : "+D"(body), "+c"(n) : "a"(seed_of(idx, gen)) : "memory");
	table()[idx] = gen;
}

static int page_ok(uint32_t idx)
{
	const uint32_t *p = page(idx), *body = p + 3;
	uint32_t gen = table()[idx];
	uint64_t n = WORDS - 3;

	if (p[0] != PAGE_MAGIC || p[1] != idx || p[2] != gen)
		return 0;
	/* repe scasl stops at the first word that differs: n is then non-zero. */
	__asm__ volatile("repe scasl\n\tjz 1f\n\tinc %1\n1:"
			 : "+D"(body), "+c"(n) : "a"(seed_of(idx, gen)) : "memory", "cc");
	return n == 0;
}

static uint32_t check_all(void)
{
	uint32_t bad = 0;

	for (uint32_t i = 0; i < npages; i++) {
		if (page_ok(i))
			continue;
		if (bad < 4) {
			kv("BAD page=", i);
			kv(" idx=", page(i)[1]);
			kv(" gen=", page(i)[2]);
			kv(" want=", table()[i]);
			putc_('\n');
		}
		bad++;
	}
	return bad;
}

/* ---- command line -------------------------------------------------------- */

/*
 * QEMU's fw_cfg: the command line is the file opt/rdmamig/cmdline, the RAM
 * size key 0x03.  Read a byte at a time through the legacy I/O ports.
 */
static void fw_cfg_select(uint16_t key)
{
	outw(FW_CFG_SEL, key);
}

static uint32_t fw_cfg_be(int bytes)
{
	uint32_t v = 0;

	while (bytes--)
		v = v << 8 | inb(FW_CFG_DATA);
	return v;
}

static uint32_t ram_mib(void)
{
	uint64_t v = 0;

	fw_cfg_select(0x03);
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)inb(FW_CFG_DATA) << (8 * i);
	return (uint32_t)(v >> 20);
}

static char cmdline[256];

static void read_cmdline(void)
{
	static const char want[] = "opt/rdmamig/cmdline";
	uint32_t n;

	fw_cfg_select(0x19); /* the file directory, big-endian */
	n = fw_cfg_be(4);
	for (uint32_t f = 0; f < n && f < 256; f++) {
		uint32_t size = fw_cfg_be(4), key = fw_cfg_be(2), same = 1;
		char name[56];

		fw_cfg_be(2);
		for (int i = 0; i < 56; i++)
			name[i] = (char)inb(FW_CFG_DATA);
		for (int i = 0; i < (int)sizeof(want); i++)
			same &= name[i] == want[i];
		if (!same)
			continue;
		if (size >= sizeof(cmdline))
			size = sizeof(cmdline) - 1;
		fw_cfg_select((uint16_t)key);
		for (uint32_t i = 0; i < size; i++)
			cmdline[i] = (char)inb(FW_CFG_DATA);
		cmdline[size] = 0;
		return;
	}
}

/* Value of "key=" in the command line, or def. */
static uint32_t arg(const char *cmd, const char *key, uint32_t def)
{
	for (const char *p = cmd; p && *p; p++) {
		const char *k = key, *q = p;

		if (p != cmd && p[-1] != ' ')
			continue;
		while (*k && *q == *k)
			k++, q++;
		if (*k || *q != '=')
			continue;
		uint32_t v = 0;
		for (q++; *q >= '0' && *q <= '9'; q++)
			v = v * 10 + (uint32_t)(*q - '0');
		return v;
	}
	return def;
}

/* ---- ring 3 ------------------------------------------------------------ */

/*
 * The guest's work runs in ring 3 (user mode): the host's hypervisor (PVM)
 * emulates a guest's ring 0 instruction by instruction but runs its user mode
 * natively, hundreds of times faster.  Ring 0 keeps the interrupt handlers
 * and a system call (int 0x80) for what ring 3 may not do there: port I/O
 * (PVM refuses it to ring 3 whatever the IOPL) and hlt.
 */
struct tss {
	uint32_t reserved0;
	uint64_t rsp0, rsp1, rsp2, reserved1, ist[7], reserved2;
	uint16_t reserved3, iomap;
} __attribute__((packed));

static struct tss tss;
static uint64_t gdt[8];
static uint8_t kstack[16384] __attribute__((aligned(16)));
static uint8_t ustack[65536] __attribute__((aligned(16)));

#define SEL_KCODE 0x18
#define SEL_KDATA 0x10
#define SEL_UDATA 0x23 /* 0x20 | RPL 3 */
#define SEL_UCODE 0x2b /* 0x28 | RPL 3 */
#define SEL_TSS 0x30

static void user_main(void);

static void enter_ring3(void)
{
	uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof(tss) - 1;
	struct { uint16_t len; uint64_t base; } __attribute__((packed)) d = {
		sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt
	};

	gdt[1] = 0x00cf9b000000ffffull; /* 0x08 kernel code 32 (unused) */
	gdt[2] = 0x00cf93000000ffffull; /* 0x10 kernel data */
	gdt[3] = 0x00af9b000000ffffull; /* 0x18 kernel code 64 */
	gdt[4] = 0x00cff3000000ffffull; /* 0x20 user data */
	gdt[5] = 0x00affb000000ffffull; /* 0x28 user code 64 */
	gdt[6] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ull << 40 |
		 ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
	gdt[7] = base >> 32;
	tss.rsp0 = (uint64_t)(uintptr_t)(kstack + sizeof(kstack));
	tss.iomap = sizeof(tss);
	__asm__ volatile("lgdt %0\n\t"
			 "ltr %w1\n\t"
			 "pushq %2\n\t"            /* ss */
			 "pushq %3\n\t"            /* rsp */
			 "pushq $0x202\n\t"        /* rflags: IF */
			 "pushq %4\n\t"            /* cs */
			 "pushq %5\n\t"            /* rip */
			 "iretq"
			 : : "m"(d), "r"((uint16_t)SEL_TSS), "i"(SEL_UDATA),
			   "r"((uint64_t)(uintptr_t)(ustack + sizeof(ustack))), "i"(SEL_UCODE),
			   "r"((uint64_t)(uintptr_t)user_main)
			 : "memory");
}

/* ---- main loop ----------------------------------------------------------- */

static uint32_t mib, rate, hb;

void guest_main(void);
void guest_main(void)
{
	uint32_t top_mib;

	serial_init();
	read_cmdline();
	mib = arg(cmdline, "mem", 64);
	rate = arg(cmdline, "rate", 0);
	hb = arg(cmdline, "hb", 100);
	top_mib = ram_mib();
	if (top_mib > 2048)
		top_mib = 2048; /* RAM above 2 GiB may sit above the PCI hole */
	if (top_mib && PAGES_BASE / (1u << 20) + mib > top_mib) {
		kv("WARN mem=", mib);
		kv(" does not fit below ", top_mib);
		puts_(" MiB: using less\n");
		mib = top_mib - PAGES_BASE / (1u << 20);
	}
	if (!hb)
		hb = 100;
	npages = mib * (1u << 20) / PAGE;
	interrupts_init();
	enter_ring3();
}

static void user_main(void)
{
	uint32_t hb_n = 0, checks = 0, dirtied = 0, cursor = 0, budget = 0, last, next_hb;

	for (uint32_t i = 0; i < npages; i++)
		write_page(i, 1);
	kv("READY pages=", npages);
	kv(" mib=", mib);
	kv(" rate=", rate);
	kv(" hb=", hb);
	putc_('\n');
	last = guest_ticks;
	next_hb = last + hb;
	for (;;) {
		uint32_t now = guest_ticks, dt = now - last;
		int c;

		if (!dt) {
			sys(SYS_IDLE, 0); /* until the next tick */
			continue;
		}
		last = now;
		/* rate pages per 1000 ticks; after a long stall, burst at most 100 ms' worth. */
		budget += rate * (dt > 100 ? 100 : dt);
		for (; budget >= TICK_HZ && npages; budget -= TICK_HZ) {
			uint32_t idx = cursor;
			cursor = cursor + 1 == npages ? 0 : cursor + 1;
			write_page(idx, table()[idx] + 1);
			dirtied++;
		}
		if ((int32_t)(now - next_hb) >= 0) {
			next_hb = now + hb;
			kv("HB n=", ++hb_n);
			kv(" t=", now);
			kv(" dirtied=", dirtied);
			putc_('\n');
		}
		while ((c = serial_getc()) >= 0) {
			if (c != 'v')
				continue;
			uint32_t t0 = guest_ticks, bad = check_all();
			kv("CHECK n=", ++checks);
			kv(" bad=", bad);
			kv(" pages=", npages);
			kv(" dirtied=", dirtied);
			kv(" ms=", guest_ticks - t0);
			putc_('\n');
		}
	}
}
