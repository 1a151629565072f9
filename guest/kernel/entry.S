/*
 * entry.S - the SDK kernel's CPL0 entry points and the image note.
 *
 *   rw_kernel_entry   where every vCPU starts in "kernel" entry mode
 *   rw_k_isr_table    one 16-byte stub per installed interrupt gate
 *   rw_k_isr_common   saves the caller-saved registers, calls rw_k_trap()
 *   the "rewind" note that tells the VMM where all of these are
 *
 * Everything here runs emulated on PVM, so it is kept short.
 */
#include "kernel.h"

	.section .text.rw_kernel, "ax"
	.code64

/*
 * RDI = vCPU index, RSI = RW_GPA_BOOT_INFO, RSP = top of this vCPU's kernel
 * stack, IF = 0, paging on (rw/abi.h "Entry"). Build the tables, load them
 * and drop to CPL3 at rw_user_entry with the register state the VMM would
 * have set for "--entry user".
 */
	.globl rw_kernel_entry
	.type rw_kernel_entry, @function
rw_kernel_entry:
	mov %rdi, %rbx
	call rw_k_setup			/* RAX = user stack top */
	lgdt rw_k_gdtr(%rip)
	lidt rw_k_idtr(%rip)
	mov %ebx, %ecx
	shl $4, %ecx
	add $RW_SEL_TSS0, %ecx
	ltr %cx
	mov $RW_SEL_UDATA, %ecx
	mov %ecx, %ds
	mov %ecx, %es
	mov %ecx, %fs
	mov %ecx, %gs
	push $RW_SEL_UDATA		/* SS */
	push %rax			/* RSP */
	push $0x202			/* RFLAGS: IF */
	push $RW_SEL_UCODE		/* CS */
	lea rw_user_entry(%rip), %rax
	push %rax			/* RIP */
	mov %rbx, %rdi
	mov $RW_GPA_BOOT_INFO, %esi
	xor %eax, %eax
	xor %ebx, %ebx
	xor %ecx, %ecx
	xor %edx, %edx
	xor %ebp, %ebp
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	xor %r11d, %r11d
	xor %r12d, %r12d
	xor %r13d, %r13d
	xor %r14d, %r14d
	xor %r15d, %r15d
	iretq
	.size rw_kernel_entry, . - rw_kernel_entry

/*
 * Interrupt stubs, at rw_k_isr_table + vector * RW_K_STUB_SIZE. Each pushes
 * a zero error code where the CPU pushes none, then the vector.
 */
	.balign RW_K_STUB_SIZE
	.globl rw_k_isr_table
rw_k_isr_table:
	.set .Lvec, 0
	.rept RW_NR_VECTORS
	.if RW_K_VEC_PRESENT(.Lvec)
	.org rw_k_isr_table + .Lvec * RW_K_STUB_SIZE
	.if !(RW_K_HAS_ERRCODE(.Lvec))
	pushq $0
	.endif
	pushq $.Lvec
	jmp rw_k_isr_common
	.endif
	.set .Lvec, .Lvec + 1
	.endr

	.balign 16
rw_k_isr_common:
	push %rax
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	cld
	mov %rsp, %rdi
	call rw_k_trap
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rax
	add $16, %rsp			/* vector, error code */
	iretq

	.section .rodata.rw_kernel, "a"
	.balign 16
rw_k_gdtr:
	.word RW_GDT_ENTRIES * 8 - 1
	.quad RW_GPA_GDT
	.balign 16
rw_k_idtr:
	.word RW_NR_VECTORS * 16 - 1
	.quad RW_GPA_IDT

/*
 * The image note (rw/abi.h "The image note"): name "rewind", type
 * RW_NOTE_TYPE_IMAGE, descriptor = struct rw_image_note. The name is 7
 * bytes padded to 8, so the descriptor starts at offset 20 of the note.
 */
	.section .note.rewind, "a", @note
	.balign 4
	.long 7
	.long rw_k_note_end - rw_k_note_desc
	.long RW_NOTE_TYPE_IMAGE
	.asciz "rewind"
	.balign 4
	.globl rw_k_note_desc
rw_k_note_desc:
	.long RW_IMAGE_MAGIC
	.long RW_ABI_VERSION
	.quad rw_kernel_entry
	.quad rw_user_entry
	.set .Lvec, 0
	.rept RW_NR_VECTORS
	.if RW_K_VEC_PRESENT(.Lvec)
	.quad rw_k_isr_table + .Lvec * RW_K_STUB_SIZE
	.else
	.quad 0
	.endif
	.set .Lvec, .Lvec + 1
	.endr
rw_k_note_end:

	.section .note.GNU-stack, "", @progbits
