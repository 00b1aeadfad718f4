/* SPDX-License-Identifier: MIT */
/*
 * The test guest is its own firmware (qemu -bios): the host's KVM is a PVM
 * hypervisor, which runs a guest's user mode natively but emulates its
 * supervisor code instruction by instruction, so SeaBIOS crawls there (6 to
 * 25 s before a -kernel guest starts, under load).  This ROM leaves real
 * mode within a few dozen instructions: reset vector -> protected mode ->
 * identity-mapped long mode, copies the C part from ROM to RAM at 1 MiB and
 * runs it; guest.c then drops to ring 3 for the real work.
 *
 * Layout (link.ld): a 64 KiB ROM at 0xFFFF0000, also seen at 0xF0000; this
 * 4 KiB section is its last page, the reset vector at 0xFFFFFFF0.  It runs
 * from the low alias (0xFF000), as SeaBIOS does.  Page tables at
 * 0x1000-0x6FFF.
 */
	.section .boot, "ax"
	.code16
	.globl boot_start
boot_start:
boot16:
	cli
	cld
	inb $0x92, %al            /* A20 on (fast gate), no reset */
	orb $2, %al
	andb $0xfe, %al
	outb %al, $0x92
	/* CS base is 0xF0000 (segment F000): address our data by offset. */
	lgdtl %cs:(gdt_desc - boot_start + 0xf000)
	lidtl %cs:(idt_null - boot_start + 0xf000)
	movl %cr0, %eax
	andl $0x1fffffff, %eax    /* caches on (CD, NW clear: reset sets them), PG off */
	orl $1, %eax              /* PE */
	movl %eax, %cr0
	ljmpl $0x08, $boot32

	.code32
boot32:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %ax, %fs
	mov %ax, %gs
	/* PML4 0x1000, PDPT 0x2000, four page directories 0x3000-0x6FFF. */
	mov $0x1000, %edi
	xor %eax, %eax
	mov $(0x6000 / 4), %ecx
	rep stosl
	movl $0x2007, 0x1000      /* present, writable, user */
	movl $0x3007, 0x2000
	movl $0x4007, 0x2008
	movl $0x5007, 0x2010
	movl $0x6007, 0x2018
	mov $0x3000, %edi
	mov $0x87, %eax           /* present, writable, user, 2 MiB */
	mov $2048, %ecx           /* 4 GiB identity map */
1:	mov %eax, (%edi)
	add $8, %edi
	add $0x200000, %eax
	loop 1b
	mov $0x1000, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x20, %eax            /* PAE */
	mov %eax, %cr4
	mov $0xc0000080, %ecx     /* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80000000, %eax      /* paging: long mode */
	mov %eax, %cr0
	ljmp $0x18, $boot64

	.code64
boot64:
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	movabs $__load_start, %rsi
	mov $__ram_start, %rdi
	mov $__ram_copy_len, %rcx
	rep movsb
	mov $__bss_start, %rdi
	mov $__bss_len, %rcx
	xor %eax, %eax
	rep stosb
	mov $stack_top, %rsp
	mov $guest_main, %rax
	call *%rax
2:	cli
	hlt
	jmp 2b

	.align 8
/* Accessed bits preset: the CPU would otherwise write them into this ROM. */
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff  /* 0x08: code, 32-bit */
	.quad 0x00cf93000000ffff  /* 0x10: data */
	.quad 0x00af9b000000ffff  /* 0x18: code, 64-bit */
gdt_desc:
	.word gdt_desc - gdt - 1
	.long gdt
idt_null:
	.word 0
	.long 0

	.code16
	.org 0xff0                /* 0xFFFFFFF0: the reset vector */
	ljmp $0xf000, $(boot16 - boot_start + 0xf000)
	.org 0x1000

/* ---- in RAM (copied) --------------------------------------------------- */
	.text
	.code64
/* IRQ0 (the PIT): count a tick, acknowledge the PIC. */
	.globl irq0_entry
irq0_entry:
	push %rax
	incl guest_ticks(%rip)
	mov $0x20, %al
	outb %al, $0x20
	pop %rax
	iretq

/*
 * #UD: the host's PVM refuses `int 0x80` from ring 3 with an invalid-opcode
 * fault; when that is what faulted, step over it and serve the system call.
 */
	.globl ud_entry
ud_entry:
	push %rax
	mov 8(%rsp), %rax         /* the faulting rip */
	cmpw $0x80cd, (%rax)      /* int $0x80 */
	pop %rax
	jne trap_stubs + 16 * 6
	addq $2, (%rsp)
	jmp syscall_entry

/*
 * int 0x80: the ring-3 part's system call (op in edi, argument in esi,
 * result in eax): the serial port and idling, which ring 3 cannot do here.
 */
	.globl syscall_entry
syscall_entry:
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	sub $8, %rsp              /* 16-byte alignment for the C call */
	call guest_syscall
	add $8, %rsp
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	iretq

	.globl spurious_entry
spurious_entry:
	iretq

/*
 * Any other vector: a bug in the guest; say which on the serial port and
 * stop.  trap_stubs holds 32 entries of 16 bytes, one per exception vector;
 * trap_entry takes every other vector.
 */
	.globl trap_stubs
	.align 16
trap_stubs:
	.set vec, 0
	.rept 32
	.align 16
	cli
	mov $vec, %edi
	jmp trap_common
	.set vec, vec + 1
	.endr

	.globl trap_entry
trap_entry:
	cli
	mov $255, %edi
trap_common:
	mov (%rsp), %rsi          /* error code or rip, for the message */
	mov 8(%rsp), %rdx
	and $-16, %rsp
	call guest_trap
3:	hlt
	jmp 3b

	.bss
	.align 16
stack:
	.skip 65536
stack_top:

	.section .note.GNU-stack, "", @progbits
