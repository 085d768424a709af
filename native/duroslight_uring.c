// Thin C body for liburing's static-inline helpers, called from C# (src/Duroslight.Reactor/Interop).
// No logic lives here: each function prepares one SQE, submits, or copies completions out.
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <liburing.h>

#define DS_EXPORT __attribute__((visibility("default")))

// One completion as C# reads it (16 bytes, no padding).
struct ds_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

// Creates a ring; the setup flags are tried as given, so the caller probes by retrying with fewer flags.
DS_EXPORT struct io_uring *ds_ring_create(unsigned entries, unsigned flags, int *error)
{
    struct io_uring *ring = calloc(1, sizeof(*ring));
    if (!ring) {
        *error = -ENOMEM;
        return NULL;
    }
    struct io_uring_params params;
    memset(&params, 0, sizeof(params));
    params.flags = flags;
    int rc = io_uring_queue_init_params(entries, ring, &params);
    if (rc < 0) {
        free(ring);
        *error = rc;
        return NULL;
    }
    // Registering the ring's own fd spares an fget/fput on every io_uring_enter (5.18+); optional.
    io_uring_register_ring_fd(ring);
    *error = 0;
    return ring;
}

DS_EXPORT void ds_ring_destroy(struct io_uring *ring)
{
    io_uring_queue_exit(ring);
    free(ring);
}

DS_EXPORT unsigned ds_ring_features(struct io_uring *ring) { return ring->features; }

// 1 if the kernel supports the opcode, 0 if not, negative errno if the probe failed.
DS_EXPORT int ds_opcode_supported(struct io_uring *ring, int opcode)
{
    struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
    if (!probe) return -ENOSYS;
    int supported = io_uring_opcode_supported(probe, opcode);
    io_uring_free_probe(probe);
    return supported;
}

// An SQE, submitting what is queued first when the submission queue is full.
static struct io_uring_sqe *sqe_for(struct io_uring *ring, uint64_t user_data)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
        if (!sqe) return NULL;
    }
    io_uring_sqe_set_data64(sqe, user_data);
    return sqe;
}

#define PREP(ring, user_data, call) do { \
        struct io_uring_sqe *sqe = sqe_for(ring, user_data); \
        if (!sqe) return -EBUSY; \
        call; \
        return 0; \
    } while (0)

DS_EXPORT int ds_prep_accept(struct io_uring *ring, int fd, int multishot, uint64_t user_data)
{
    if (multishot)
        PREP(ring, user_data, io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC));
    PREP(ring, user_data, io_uring_prep_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC));
}

DS_EXPORT int ds_prep_recv(struct io_uring *ring, int fd, void *buf, unsigned len, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_recv(sqe, fd, buf, len, 0));
}

// A multishot receive (6.0+; single-shot before) into buffers the kernel picks from the provided-buffer ring
// `group`: it stays armed across completions (IORING_CQE_F_MORE) until an error, end of stream, cancel or no buffer.
DS_EXPORT int ds_prep_recv_select(struct io_uring *ring, int fd, int group, int multishot, uint64_t user_data)
{
    struct io_uring_sqe *sqe = sqe_for(ring, user_data);
    if (!sqe) return -EBUSY;
    io_uring_prep_recv(sqe, fd, NULL, 0, 0);
    if (multishot) sqe->ioprio |= IORING_RECV_MULTISHOT;
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = (uint16_t)group;
    return 0;
}

// Cancels the one operation whose user_data is `target` (it completes with -ECANCELED, or not at all if it finished).
DS_EXPORT int ds_prep_cancel(struct io_uring *ring, uint64_t target, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_cancel64(sqe, target, 0));
}

// A provided-buffer ring (5.19+): `count` (a power of two) buffers of `size` bytes in one block at `base`, buffer i
// at base + i * size, registered as buffer group `group`. Returns NULL and a negative errno if the kernel refuses.
struct ds_buf_ring {
    struct io_uring_buf_ring *ring;
    size_t ring_bytes;
    unsigned char *base;
    unsigned count, size;
    int group;
};

DS_EXPORT struct ds_buf_ring *ds_buf_ring_create(struct io_uring *ring, unsigned count, unsigned size, int group, int *error)
{
    struct ds_buf_ring *b = calloc(1, sizeof(*b));
    if (!b) {
        *error = -ENOMEM;
        return NULL;
    }
    b->ring_bytes = count * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, b->ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED || posix_memalign((void **)&b->base, 4096, (size_t)count * size) != 0) {
        if (mem != MAP_FAILED) munmap(mem, b->ring_bytes);
        free(b);
        *error = -ENOMEM;
        return NULL;
    }
    b->ring = mem;
    b->count = count;
    b->size = size;
    b->group = group;
    io_uring_buf_ring_init(b->ring);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)b->ring;
    reg.ring_entries = count;
    reg.bgid = (uint16_t)group;
    int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc < 0) {
        munmap(b->ring, b->ring_bytes);
        free(b->base);
        free(b);
        *error = rc;
        return NULL;
    }
    for (unsigned i = 0; i < count; i++)
        io_uring_buf_ring_add(b->ring, b->base + (size_t)i * size, size, (unsigned short)i, (int)count - 1, (int)i);
    io_uring_buf_ring_advance(b->ring, (int)count);
    *error = 0;
    return b;
}

DS_EXPORT unsigned char *ds_buf_ring_base(struct ds_buf_ring *b) { return b->base; }

// Gives buffer `bid` back to the kernel once its data has been consumed.
DS_EXPORT void ds_buf_ring_recycle(struct ds_buf_ring *b, unsigned bid)
{
    io_uring_buf_ring_add(b->ring, b->base + (size_t)bid * b->size, b->size, (unsigned short)bid, (int)b->count - 1, 0);
    io_uring_buf_ring_advance(b->ring, 1);
}

DS_EXPORT void ds_buf_ring_destroy(struct io_uring *ring, struct ds_buf_ring *b)
{
    io_uring_unregister_buf_ring(ring, b->group);
    munmap(b->ring, b->ring_bytes);
    free(b->base);
    free(b);
}

DS_EXPORT int ds_prep_send(struct io_uring *ring, int fd, const void *buf, unsigned len, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL));
}

// A gathering send: msg (and the iovecs it points at) must stay valid until the completion.
DS_EXPORT int ds_prep_sendmsg(struct io_uring *ring, int fd, const struct msghdr *msg, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL));
}

DS_EXPORT int ds_prep_read(struct io_uring *ring, int fd, void *buf, unsigned len, uint64_t offset, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_read(sqe, fd, buf, len, offset));
}

DS_EXPORT int ds_prep_write(struct io_uring *ring, int fd, const void *buf, unsigned len, uint64_t offset, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_write(sqe, fd, buf, len, offset));
}

// Registered (fixed) buffers for block I/O: a table of empty slots at start-up, then one buffer per slot (an empty
// iovec clears it). The kernel pins a registered buffer's pages once, so READ_FIXED / WRITE_FIXED skip the per-I/O
// page pinning of O_DIRECT. Each returns 0 or a negative errno.
DS_EXPORT int ds_register_buffer_table(struct io_uring *ring, unsigned slots)
{
    return io_uring_register_buffers_sparse(ring, slots);
}

DS_EXPORT int ds_register_buffer(struct io_uring *ring, unsigned slot, void *buf, size_t len)
{
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    __u64 tag = 0;
    int rc = io_uring_register_buffers_update_tag(ring, slot, &iov, &tag, 1);
    return rc < 0 ? rc : 0;
}

DS_EXPORT int ds_prep_read_fixed(struct io_uring *ring, int fd, void *buf, unsigned len, uint64_t offset, int slot, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_read_fixed(sqe, fd, buf, len, offset, slot));
}

DS_EXPORT int ds_prep_write_fixed(struct io_uring *ring, int fd, const void *buf, unsigned len, uint64_t offset, int slot, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_write_fixed(sqe, fd, buf, len, offset, slot));
}

DS_EXPORT int ds_prep_fdatasync(struct io_uring *ring, int fd, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC));
}

DS_EXPORT int ds_prep_cancel_fd(struct io_uring *ring, int fd, uint64_t user_data)
{
    PREP(ring, user_data, io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL));
}

// 1 when a polling iteration must enter the kernel: SQEs to submit, completion work waiting for this thread
// (IORING_SQ_TASKRUN, set with IORING_SETUP_TASKRUN_FLAG) or held back by a full CQ. Most spins then cost a load from
// the shared ring and no syscall; and since this never blocks, C# calls it without a GC transition, which ds_submit
// needs. A ring with deferred or cooperative task work but without that flag cannot tell, so it always enters.
DS_EXPORT int ds_needs_enter(struct io_uring *ring)
{
    bool flagged = ring->flags & IORING_SETUP_TASKRUN_FLAG
        || !(ring->flags & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_DEFER_TASKRUN));
    unsigned kflags = IO_URING_READ_ONCE(*ring->sq.kflags);
    return !flagged || io_uring_sq_ready(ring) != 0 || (kflags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0;
}

// Submits queued SQEs and runs pending completion work; waits for at least one completion when timeout_us > 0.
DS_EXPORT int ds_submit(struct io_uring *ring, long timeout_us)
{
    if (timeout_us <= 0) return io_uring_submit_and_get_events(ring);
    struct __kernel_timespec ts = { .tv_sec = timeout_us / 1000000, .tv_nsec = (timeout_us % 1000000) * 1000 };
    struct io_uring_cqe *cqe;
    int rc = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
    return rc == -ETIME || rc == -EINTR ? 0 : rc;
}

// Copies up to max completions into out and marks them seen; returns how many. Never enters the kernel (unlike
// io_uring_peek_batch_cqe, which does when completion work is pending): ds_submit at the end of the shard's loop
// iteration is the one place that enters, so it submits and runs that work in one crossing.
DS_EXPORT int ds_reap(struct io_uring *ring, struct ds_cqe *out, int max)
{
    unsigned head, n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(ring, head, cqe) {
        if (n == (unsigned)max) break;
        out[n].user_data = cqe->user_data;
        out[n].res = cqe->res;
        out[n].flags = cqe->flags;
        n++;
    }
    io_uring_cq_advance(ring, n);
    return (int)n;
}
