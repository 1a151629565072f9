/*
 * crt0.S - where every vCPU enters the CPL3 program.
 *
 * RDI = vCPU index, RSI = RW_GPA_BOOT_INFO, RSP = the vCPU's user stack top
 * (16-byte aligned), RFLAGS.IF = 1 (rw/abi.h "Entry"), in both entry modes.
 */
	.section .text.rw_entry, "ax"
	.globl rw_user_entry
	.type rw_user_entry, @function
rw_user_entry:
	xor %ebp, %ebp
	call rw_crt_start
	ud2
	.size rw_user_entry, . - rw_user_entry

	.section .note.GNU-stack, "", @progbits
