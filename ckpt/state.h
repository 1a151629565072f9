/*
 * state.h - the machine-state records of a checkpoint: one per vCPU, one for
 * the platform (PICs, IOAPIC, PIT, KVM clock), the VM configuration, and the
 * device records through the device registry.
 *
 * Every record uses the format of record.h (magic, kind, version, length,
 * checksum, then fields written one by one, little-endian). No C struct is
 * ever copied whole into a record: padding and reserved members of KVM's
 * structs are not recorded and decode as zero.
 *
 * Decoders validate everything they can before they return: the header
 * (rec_open: size, checksum, kind, version), every field's presence and
 * encoding, and the values against the VM they are meant for (vCPU count,
 * memory size, addresses inside guest RAM, what this KVM can restore). A
 * refused record leaves a one-line explanation in why, always of the form
 *
 *     "<record key>: <field>: <reason>"
 *
 * (e.g. "vcpu/1: lapic.id: 0x03000000 belongs to vCPU 3"), so that the
 * restore path can print it as it is. why may be NULL (or whylen 0) when no
 * message is wanted. Nothing here asserts or aborts on record contents, logs
 * a refusal, or touches the VM while validating.
 *
 * Errors returned by the decoders and validators:
 *   RW_ECORRUPT   truncated, malformed, or a value that cannot be right
 *   RW_ECHECKSUM  the checksum does not match (a flipped bit)
 *   RW_EVERSION   version outside what this build reads, or an unknown
 *                 critical tagged field
 *   RW_ENOKVMCAP  the state needs something this host's KVM does not have:
 *                 an XSAVE area of another size, an MSR it cannot restore
 *   RW_ENOTFOUND  (registry) a record the VM needs is missing
 *   -EINVAL       (encoders) a state whose shape does not fit the VM
 *   -ENOMEM       (encoders)
 *
 * A restore uses them in this order, so that nothing is changed before
 * every record has been accepted: state_config_decode() -> create the VM
 * from that configuration -> state_check_names() on the checkpoint's list
 * of records -> state_vcpu_decode() for each vCPU and
 * state_platform_decode() (they need the VM: its RAM size, vCPU count,
 * XSAVE size and MSR list) -> state_devices_validate() -> only then fill
 * memory and apply: platform_state_load(), vcpu_state_load() for each
 * vCPU, state_devices_load().
 *
 * ------------------------------------------------------------------------
 * Record layouts, version 1. Every integer little-endian, no padding;
 * "u8 flag" fields hold 0 or 1. Each payload ends with an optional list of
 * tagged fields (record.h); version 1 defines none for "vcpu" and
 * "platform", so a v1 reader skips unknown non-critical ones and refuses
 * critical ones.
 *
 * "vcpu" (key "vcpu/<index>"):
 *   u32   mp_state                KVM_MP_STATE_RUNNABLE..SIPI_RECEIVED
 *   u64   rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15
 *   u64   rip rflags
 *   segment x 8, in the order cs ds es fs gs ss tr ldt, each:
 *         u64 base, u32 limit, u16 selector, u8 type, u8 present, u8 dpl,
 *         u8 db, u8 s, u8 l, u8 g, u8 avl, u8 unusable
 *   dtable x 2, gdt then idt: u64 base, u16 limit
 *   u64   cr0 cr2 cr3 cr4 cr8 efer apic_base
 *   u64   sregs2 flags (KVM_SREGS2_FLAGS_PDPTRS_VALID), u64 pdptrs[4]
 *   u32   xcrs flags, u32 nr_xcrs (<= KVM_MAX_XCRS),
 *         nr_xcrs x (u32 xcr, u64 value)
 *   u64   db0 db1 db2 db3 dr6 dr7, u64 debugregs flags
 *   1024 bytes: the LAPIC register page as KVM_GET_LAPIC returns it
 *   events: u8 exception.injected, u8 exception.nr,
 *         u8 exception.has_error_code, u8 exception.pending,
 *         u32 exception.error_code, u8 exception_has_payload,
 *         u64 exception_payload,
 *         u8 interrupt.injected, u8 interrupt.nr, u8 interrupt.soft,
 *         u8 interrupt.shadow,
 *         u8 nmi.injected, u8 nmi.pending, u8 nmi.masked,
 *         u32 sipi_vector, u32 flags (KVM_VCPUEVENT_VALID_*),
 *         u8 smi.smm, u8 smi.pending, u8 smi.smm_inside_nmi,
 *         u8 smi.latched_init, u8 triple_fault.pending
 *   u32   nr_msrs, nr_msrs x (u32 index, u64 value)
 *   u32   xsave size (must equal the VM's XSAVE size), then that many bytes:
 *         the XSAVE area in KVM's uABI (standard, non-compacted) layout
 *
 * "platform" (key "vm/platform"):
 *   pic x 2, master then slave, 16 x u8 each: last_irr irr imr isr
 *         priority_add irq_base read_reg_select poll special_mask
 *         init_state auto_eoi rotate_on_auto_eoi special_fully_nested_mode
 *         init4 elcr elcr_mask
 *   ioapic: u64 base_address, u32 ioregsel, u32 id, u32 irr,
 *         24 x u64 redirection entry (the 64-bit register value)
 *   pit channel x 3, each: u32 count, u16 latched_count, u8 count_latched,
 *         u8 status_latched, u8 status, u8 read_state, u8 write_state,
 *         u8 write_latch, u8 rw_mode, u8 mode, u8 bcd, u8 gate,
 *         u64 count_load_time (signed, two's complement)
 *   u32   pit flags (KVM_PIT_FLAGS_*)
 *   u64   clock, u32 clock flags, u64 realtime, u64 host_tsc
 *
 * "config" (stored as the checkpoint's configuration, not a named record):
 *   u64   mem_size
 *   u32   ncpus
 *   u32   entry                   enum vm_entry
 *   str   kernel                  < RW_PATH_MAX bytes, no NUL
 *   str   args                    < sizeof(vm_config.args), no NUL
 *   str   serial_out              < RW_PATH_MAX, no NUL
 *   u8    serial_in               flag
 *   tagged fields: see STATE_CFG_TAG_* below
 *   Host options of struct vm_config (dirty_ring_entries) are not
 *   recorded: a decoded configuration has config_init()'s values there.
 * ------------------------------------------------------------------------
 */
#ifndef RW_CKPT_STATE_H
#define RW_CKPT_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "device.h"
#include "err.h"
#include "record.h"
#include "vcpu_state.h"

struct vm;

#define STATE_KIND_VCPU "vcpu"
#define STATE_KIND_PLATFORM "platform"
#define STATE_KIND_CONFIG "config"

#define STATE_VCPU_VERSION 1
#define STATE_PLATFORM_VERSION 1
#define STATE_CONFIG_VERSION 1

#define STATE_KEY_PLATFORM "vm/platform"
/* Big enough for every record key: "vcpu/<n>", "vm/platform", device keys. */
#define STATE_KEY_MAX DEV_KEY_MAX

/* ------------------------------------------------------------------- vCPU */

/* "vcpu/<index>" into buf. Returns 0, or -ERANGE if len is too small. */
int state_vcpu_key(unsigned index, char *buf, size_t len);

/*
 * Encode st, captured from vCPU index of vm, as a "vcpu" record. On success
 * *buf (to be freed with free()) and *len hold the whole record. Returns 0,
 * -EINVAL (index >= vm->ncpus, st's XSAVE size is not the VM's, more MSRs
 * than the VM saves, more than KVM_MAX_XCRS XCRs) or -ENOMEM. Values are
 * not checked here (state_vcpu_check() does that).
 */
int state_vcpu_encode(const struct vm *vm, unsigned index, const struct vcpu_state *st,
		      uint8_t **buf, size_t *len) RW_MUST_CHECK;

/*
 * Decode and validate the record of vCPU index for vm into *out (fully
 * overwritten; zeroed on failure). The MSRs come out in the order of
 * vm->msr_index, which is the order vcpu_state_load() needs (TSC first,
 * TSC_DEADLINE last) whatever order the record had. Checks, besides the
 * header and every field's presence:
 *   index < vm->ncpus; mp_state a state x86 KVM restores; RFLAGS reserved
 *   bits clear and bit 1 set; RIP, segment, GDT and IDT bases canonical;
 *   segment attributes in range; CR0/CR4/EFER without reserved bits and
 *   consistent (PG needs PE, NW needs CD, LMA iff LME with PG, long mode
 *   needs PAE, CS.L only in long mode and not with CS.D); CR8 <= 15; with
 *   paging on, the page-table root (CR3) inside guest RAM; the GDT and IDT
 *   inside guest RAM when they are reached physically (paging off) or lie
 *   in the lower canonical half, which rewind guests map one to one
 *   (tables in the upper half, as a Linux kernel keeps them, are only
 *   checked to be canonical: their physical place needs the guest's page
 *   tables); APIC base at RW_GPA_LAPIC with no reserved bits, x2APIC only
 *   with the APIC enabled, the BSP flag on vCPU 0 alone; the LAPIC ID
 *   register naming this vCPU; sregs2 flags known, PDPTRs only with PAE
 *   paging outside long mode; XCR0 the only XCR, with x87 set and AVX only
 *   with SSE; debug register flags 0, DR6/DR7 upper halves 0; vCPU event
 *   flags known, flag fields 0 or 1, exception vector < 32 (not NMI) when
 *   one is injected or pending, interrupt shadow bits known, SIPI vector
 *   < 256; nr_msrs within what the VM saves, every MSR index one this KVM
 *   can restore (vm->msr_index), none twice; XSAVE size equal to
 *   vm->xsave_size, its header's XCOMP_BV and reserved bytes zero, MXCSR
 *   upper half zero.
 * Returns 0 or an error listed at the top of this file, with why filled.
 */
int state_vcpu_decode(const struct vm *vm, unsigned index, const void *buf, size_t len,
		      struct vcpu_state *out, char *why, size_t whylen) RW_MUST_CHECK;

/*
 * The value checks of state_vcpu_decode() on an in-memory state (as the
 * fast-reset path keeps them). Returns 0, RW_ECORRUPT or RW_ENOKVMCAP.
 */
int state_vcpu_check(const struct vm *vm, unsigned index, const struct vcpu_state *st, char *why,
		     size_t whylen) RW_MUST_CHECK;

/* --------------------------------------------------------------- platform */

/* Encode st as the "platform" record (key STATE_KEY_PLATFORM). 0 or -ENOMEM. */
int state_platform_encode(const struct vm *vm, const struct platform_state *st, uint8_t **buf,
			  size_t *len) RW_MUST_CHECK;

/*
 * Decode and validate the platform record into *out (chip ids filled in,
 * everything else not recorded zero). Checks: PIC irq_base a multiple of 8,
 * priority_add <= 7, init_state <= 3, flag fields 0 or 1, elcr_mask the
 * value KVM gives each PIC (0xf8 master, 0xde slave) and elcr inside it;
 * IOAPIC base at RW_GPA_IOAPIC, id <= 15, irr only on the 24 pins; PIT
 * count <= 0x10000, mode 0..5 or 0xff (never programmed), rw_mode <= 3,
 * read/write state <= 4, count_latched <= 3, flag fields 0 or 1, PIT flags
 * known; clock flags known.
 */
int state_platform_decode(const struct vm *vm, const void *buf, size_t len,
			  struct platform_state *out, char *why, size_t whylen) RW_MUST_CHECK;

/* The value checks of state_platform_decode() on an in-memory state. */
int state_platform_check(const struct vm *vm, const struct platform_state *st, char *why,
			 size_t whylen) RW_MUST_CHECK;

/* ---------------------------------------------------------- configuration */

/*
 * Tagged fields of the "config" record. Tag numbers are private to this
 * record kind:
 *
 *   0x0100-0x01ff, 0x8100-0x81ff   reserved for disks (the virtio-blk
 *                                  issue). STATE_CFG_TAG_DISK is one disk
 *                                  and repeats once per disk, in --disk
 *                                  order. It is critical: a reader that
 *                                  does not know disks must refuse a VM
 *                                  that has them rather than restore it
 *                                  without. Its value is a list of tagged
 *                                  fields, STATE_CFG_DISK_*.
 *   everything else                unassigned
 *
 * Until struct vm_config carries disks, the fields are written and read
 * through struct state_config_ext (below), so that the disk code can own
 * them without changing this file.
 */
#define STATE_CFG_TAG_DISK (REC_TAG_CRITICAL | 0x0100u)
#define STATE_CFG_DISK_PATH 0x0001u   /* str: backing file */
#define STATE_CFG_DISK_ID 0x0002u     /* str: instance id ("data") */
#define STATE_CFG_DISK_RO 0x0003u     /* u8 flag: read-only */
#define STATE_CFG_DISK_ENGINE 0x0004u /* u8: 0 io_uring, 1 sync */

/*
 * Hooks for tagged fields that other code owns. put writes extra tagged
 * fields after the fixed ones (with rec_tag_begin/rec_tag_end or
 * rec_put_tagged) and returns 0 or an error. tag is called by the decoder
 * for each tagged field it does not know, with a reader bounded to the
 * field's value; it returns 1 if it took the field (and checked it, using
 * rec_fail() to name what is wrong), 0 if it does not know it either (the
 * decoder then skips it, or refuses it if critical), or a negative error.
 * Any member may be NULL.
 */
struct state_config_ext {
	int (*put)(void *arg, struct rec_writer *w);
	int (*tag)(void *arg, uint16_t tag, struct rec_reader *field);
	void *arg;
};

/*
 * Encode cfg as a "config" record (*buf freed with free()). Values are not
 * checked here: the decoder checks them. Returns 0, -EINVAL (a string not
 * terminated inside its buffer), -ENOMEM, or an error from ext->put.
 */
int state_config_encode(const struct vm_config *cfg, uint8_t **buf, size_t *len) RW_MUST_CHECK;
int state_config_encode_ext(const struct vm_config *cfg, const struct state_config_ext *ext,
			    uint8_t **buf, size_t *len) RW_MUST_CHECK;

/*
 * Decode and validate a "config" record into *out (config_init()'s values
 * for what is not recorded; on failure *out is config_init()'s). Checks:
 * mem_size within RW_MEM_MIN..RW_MEM_MAX and a multiple of 2 MiB, ncpus
 * 1..RW_MAX_CPUS, entry a known enum vm_entry, strings without NUL and
 * shorter than their buffers, serial_in 0 or 1, no unknown critical tag.
 * Messages name the record "config".
 */
int state_config_decode(const void *buf, size_t len, struct vm_config *out, char *why,
			size_t whylen) RW_MUST_CHECK;
int state_config_decode_ext(const void *buf, size_t len, const struct state_config_ext *ext,
			    struct vm_config *out, char *why, size_t whylen) RW_MUST_CHECK;

/* ---------------------------------------------------------------- devices */

/*
 * Store one record: key "dev/<type>/<id>", the record's version, and the
 * whole record (header + payload; only valid during the call). Returns 0 or
 * a negative error, which stops the walk.
 */
typedef int (*state_put_fn)(void *arg, const char *key, uint32_t version, const void *data,
			    size_t len);

/*
 * Find the record stored under key. Returns 0 with *data and *len set (the
 * bytes must stay valid until the registry call returns), RW_ENOTFOUND if
 * there is none, or another negative error.
 */
typedef int (*state_lookup_fn)(void *arg, const char *key, const void **data, size_t *len);

/*
 * Save every device of vm that has a save op, in device-list order: the
 * record is written with the device type's name as kind and its
 * state_version, then handed to put. The devices must be quiesced (the
 * caller's pause). Returns 0, the first error of a save op (logged with
 * the device's key, the one place that knows it) or put's error.
 */
int state_devices_save(struct vm *vm, state_put_fn put, void *arg) RW_MUST_CHECK;

/*
 * Check, without touching any device, that every device of vm with a save
 * op has its record, that the record opens (checksum, kind = the type's
 * name, version within [min_version, state_version]) and that the type's
 * validate op accepts it. A missing record is an error (RW_ENOTFOUND),
 * never skipped; so is a device type that saves but has no load op
 * (-ENOSYS). Stops at the first refusal, naming the device's key and,
 * where the device named one with rec_fail(), the field.
 */
int state_devices_validate(struct vm *vm, state_lookup_fn lookup, void *arg, char *why,
			   size_t whylen) RW_MUST_CHECK;

/*
 * Apply every device record with the type's load op. Call only after
 * state_devices_validate() accepted the same records: a device whose load
 * fails has already been changed, and so may the ones before it.
 */
int state_devices_load(struct vm *vm, state_lookup_fn lookup, void *arg, char *why,
		       size_t whylen) RW_MUST_CHECK;

/*
 * Check the list of every record name a checkpoint holds against vm: each
 * name must be "vcpu/0".."vcpu/<ncpus-1>", STATE_KEY_PLATFORM, or the key of
 * a device of vm that has a save op; no name may appear twice; and every
 * one of those records must be present. Returns 0, RW_ECORRUPT (an extra
 * or repeated name, named in why) or RW_ENOTFOUND (a missing one).
 */
int state_check_names(const struct vm *vm, const char *const names[], size_t n, char *why,
		      size_t whylen) RW_MUST_CHECK;

#endif
