/*
 * virtio_blk.h - virtio-blk over virtio-mmio ("virtio-blk" device type).
 *
 * One instance per --disk, on a virtio-mmio window (virtio_mmio.h) with one
 * request queue of up to VIRTIO_BLK_QUEUE_MAX entries, backed by a
 * copy-on-write disk (disk.h: the file given is never written).
 *
 * Id: the configured one (--disk a.img,id=data: "data") or
 * "virtio-blk@mmio-0x<base>" ("virtio-blk@mmio-0xd0000000"). The record key
 * is "dev/virtio-blk/<id>", the GET_ID answer is the id's first 20 bytes
 * and the disk's name (disk_name, the checkpoint store's disk map name) is
 * the id too.
 *
 * Features offered: VIRTIO_F_VERSION_1, VIRTIO_BLK_F_SIZE_MAX (1 MiB),
 * VIRTIO_BLK_F_SEG_MAX (126), VIRTIO_BLK_F_BLK_SIZE (512),
 * VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_TOPOLOGY (4 KiB physical blocks: the
 * overlay's granularity) and VIRTIO_BLK_F_RO for a read-only disk. Not
 * offered: indirect descriptors, event index, multiqueue, discard, write
 * zeroes, config writeback.
 *
 * Configuration space (virtio 1.2 5.2.4): capacity (512-byte sectors),
 * size_max, seg_max, geometry (zero), blk_size, topology, writeback (0),
 * num_queues (1); the rest reads as zero.
 *
 * Requests (virtio 1.2 5.2.6), framing-independent as the spec requires
 * (the header may share a descriptor with data, data may be split
 * anyhow): the first 16 device-readable bytes are the header, the last
 * device-writable byte is the status, the bytes between are the data.
 *   IN (0)      read; no readable data, writable data a multiple of 512
 *   OUT (1)     write; no writable data besides the status, readable data a
 *               multiple of 512; IOERR on a read-only disk
 *   FLUSH (4)   OK at once (see disk.h: the overlay needs no flushing)
 *   GET_ID (8)  the id, zero-padded, into up to 20 data bytes
 *   others      UNSUPP
 * A request beyond the disk's end, with data in the wrong direction, a
 * header shorter than 16 bytes, a buffer outside guest RAM, more than
 * seg_max data segments or more than 128 MiB in total fails with IOERR. A
 * chain whose last descriptor is not a writable buffer inside RAM has
 * nowhere to put a status: the device enters DEVICE_NEEDS_RESET, as it
 * does for chains that cannot be walked (virtio.h) and for a chain made
 * available again while still in flight. Guest errors are logged once per
 * device.
 *
 * Engines: requests are parsed and submitted on the vCPU thread that wrote
 * QueueNotify. With io_uring they complete on the VM's event thread (the
 * disk's eventfd), or right away on the vCPU thread when the kernel
 * finished them during submission; with the sync engine they complete
 * before the notify returns. Quiesce (and reset, and QueueReady = 0) wait
 * for every request in flight, so a record never has to describe one.
 *
 * Record (version 1): layout in virtio_blk.c.
 */
#ifndef RW_DEVICES_VIRTIO_BLK_H
#define RW_DEVICES_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

struct vm;
struct device;
struct disk;
struct virtio_blk;

#define VIRTIO_BLK_TYPE_NAME "virtio-blk" /* on disk: dev/virtio-blk/<id> */
/* 2: the disk identity hashes all of a disk over 256 MiB (1: by samples) */
#define VIRTIO_BLK_STATE_VERSION 2
#define VIRTIO_ID_BLOCK 2

#define VIRTIO_BLK_QUEUE_MAX 256u
#define VIRTIO_BLK_SEG_MAX 126u
#define VIRTIO_BLK_SIZE_MAX (1u << 20)
#define VIRTIO_BLK_MAX_BYTES (128u << 20)  /* all buffers of one request */
#define VIRTIO_BLK_ID_BYTES 20u

/* Feature bits (virtio 1.2 5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_GEOMETRY 4
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10

/* Request types and status values (virtio 1.2 5.2.6). */
#define VIRTIO_BLK_T_IN 0u
#define VIRTIO_BLK_T_OUT 1u
#define VIRTIO_BLK_T_FLUSH 4u
#define VIRTIO_BLK_T_GET_ID 8u
#define VIRTIO_BLK_S_OK 0u
#define VIRTIO_BLK_S_IOERR 1u
#define VIRTIO_BLK_S_UNSUPP 2u

/* Configuration space offsets. */
#define VIRTIO_BLK_CFG_CAPACITY 0
#define VIRTIO_BLK_CFG_SIZE_MAX 8
#define VIRTIO_BLK_CFG_SEG_MAX 12
#define VIRTIO_BLK_CFG_BLK_SIZE 20
#define VIRTIO_BLK_CFG_TOPOLOGY 24
#define VIRTIO_BLK_CFG_NUM_QUEUES 34
#define VIRTIO_BLK_CONFIG_LEN 64u

/* The device type (name "virtio-blk", record version 1). */
extern const struct device_type virtio_blk_device_type;

/*
 * Create a virtio-blk on vm: open cfg's disk, claim the MMIO window at base
 * ([base, base + RW_VIRTIO_WINDOW)) with interrupt line irq, publish it in
 * the VM's boot info (vm->virtio[]), add the instance to the device list
 * and, with io_uring, register its completion eventfd with the event
 * thread. Must run before vm_start (and before vm_boot, which writes the
 * boot info). Errors are logged with the id and the cause: the disk's
 * (disk_open), -EEXIST (an instance with this id exists, or the window is
 * taken), -ENOSPC (no virtio slot left), -EINVAL, -ENOMEM.
 */
int virtio_blk_create(struct vm *vm, uint64_t base, uint32_t irq,
		      const struct vm_disk_config *cfg, struct virtio_blk **out) RW_MUST_CHECK;

/* The generic device of an instance, and back (NULL if dev is not a virtio-blk). */
struct device *virtio_blk_device(struct virtio_blk *b);
struct virtio_blk *virtio_blk_from_device(struct device *dev);
bool virtio_blk_is(const struct device *dev);

/*
 * The copy-on-write disk behind a virtio-blk instance (NULL if dev is not
 * one). Valid as long as the device; the checkpoint API of disk.h may be
 * used on it while the device is quiesced.
 */
struct disk *virtio_blk_disk(struct device *dev);

#endif
