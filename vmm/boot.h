/*
 * boot.h - loading a guest image and setting up the machine it starts in.
 *
 * See guest/include/rw/abi.h for the machine model: memory layout, page
 * tables, segments, entry state and the image note.
 */
#ifndef RW_VMM_BOOT_H
#define RW_VMM_BOOT_H

#include "err.h"

struct vm;
struct vcpu;

/*
 * Load the ELF64 image at path into guest RAM (through mem_write), write the
 * page tables, boot info and args, and, for VM_ENTRY_USER, the GDT/IDT/TSS;
 * enable the console UART's FIFOs as firmware would (call it after the board
 * is built, before input is fed); fill vm->image. Does not touch vCPU
 * registers.
 *
 * Errors (each logged once with the path and what is wrong):
 *   -ENOENT/-EACCES/-EISDIR/-errno   the file cannot be opened or read
 *   -ENOMEM                  out of host memory
 *   RW_EBADIMAGE             not an x86-64 ELF executable, a segment outside
 *                            RAM or below RW_GPA_IMAGE_MIN, a malformed note,
 *                            an ABI version this VMM does not speak, entry
 *                            user requested for a bare image, args too long,
 *                            no room for the vCPU stacks after the image
 *   RW_ELIMIT                RAM needs more page-table pages than fit below
 *                            RW_GPA_PGTABLE_END (not reachable up to RW_MEM_MAX)
 */
int boot_load(struct vm *vm) RW_MUST_CHECK;

/* Put vcpu in its entry state (registers, segments, CR*, EFER, XCR0, MP). */
int boot_setup_vcpu(struct vm *vm, struct vcpu *vcpu) RW_MUST_CHECK;

#endif
