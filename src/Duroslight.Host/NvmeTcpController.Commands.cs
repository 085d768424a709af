using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Duroslight.Protocol.Nvme;

namespace Duroslight.Host;

/// <summary>The command surface: I/O (allocation-free in steady state) and admin/fabrics helpers.</summary>
public sealed partial class NvmeTcpController
{
    private const int DsmRangeSize = 16;

    /// <summary>Reads <paramref name="blocks"/> blocks into <paramref name="destination"/> (exactly blocks × block size bytes).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReadAsync(uint nsid, ulong slba, int blocks, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        var cqe = await NextIoQueue().ExecuteAsync(NvmeCommands.Read(nsid, slba, blocks), destination, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, IoOpcode.Read);
    }

    /// <summary>Writes <paramref name="source"/> (exactly blocks × block size bytes); FUA makes it durable before completion.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(uint nsid, ulong slba, int blocks, ReadOnlyMemory<byte> source, bool fua = false,
        CancellationToken cancellationToken = default)
    {
        // The queue only reads host-to-controller buffers.
        var data = MemoryMarshal.AsMemory(source);
        var cqe = await NextIoQueue().ExecuteAsync(NvmeCommands.Write(nsid, slba, blocks, fua), data, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, IoOpcode.Write);
    }

    /// <summary>Flush; the default NSID FFFFFFFFh flushes every namespace.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushAsync(uint nsid = uint.MaxValue, CancellationToken cancellationToken = default)
    {
        var cqe = await NextIoQueue().ExecuteAsync(NvmeCommands.Flush(nsid), default, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, IoOpcode.Flush);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteZeroesAsync(uint nsid, ulong slba, int blocks, bool deallocate = false, bool fua = false,
        CancellationToken cancellationToken = default)
    {
        var command = NvmeCommands.WriteZeroes(nsid, slba, blocks, deallocate, fua);
        var cqe = await NextIoQueue().ExecuteAsync(command, default, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, IoOpcode.WriteZeroes);
    }

    /// <summary>Dataset Management with the Deallocate attribute over up to 256 ranges.</summary>
    public async Task DeallocateAsync(uint nsid, IReadOnlyList<LbaRange> ranges, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        int bytes = ranges.Count * DsmRangeSize;
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(bytes, 1));
        try
        {
            WriteDsmRanges(buffer.AsSpan(0, bytes), ranges);
            var command = NvmeCommands.DatasetManagement(nsid, ranges.Count, deallocate: true);
            var cqe = await NextIoQueue().ExecuteAsync(command, buffer.AsMemory(0, bytes), cancellationToken).ConfigureAwait(false);
            ThrowIfFailed(cqe, IoOpcode.DatasetManagement);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Runs any I/O command on the next I/O queue and returns its completion without interpreting the status.</summary>
    public ValueTask<CompletionEntry> ExecuteIoAsync(NvmeCommand command, Memory<byte> data, CancellationToken cancellationToken = default) =>
        NextIoQueue().ExecuteAsync(command, data, cancellationToken);

    /// <summary>Runs any admin or fabrics command on the admin queue and returns its completion uninterpreted.</summary>
    public ValueTask<CompletionEntry> ExecuteAdminAsync(NvmeCommand command, Memory<byte> data, CancellationToken cancellationToken = default) =>
        _admin.ExecuteAsync(command, data, cancellationToken);

    /// <summary>Reads <paramref name="length"/> bytes (a multiple of 4) of a log page, in MDTS-sized pieces.</summary>
    public async Task<byte[]> GetLogPageAsync(byte logPageId, int length, ulong offset = 0, bool retainAsyncEvent = false,
        uint nsid = uint.MaxValue, CancellationToken cancellationToken = default)
    {
        var page = new byte[length];
        int chunk = Identity is { MaxTransferBytes: > 0 } id ? id.MaxTransferBytes : length;
        for (int done = 0; done < length;)
        {
            int n = Math.Min(chunk, length - done);
            var command = NvmeCommands.GetLogPage(logPageId, n, offset + (ulong)done, retainAsyncEvent, nsid);
            var cqe = await _admin.ExecuteAsync(command, page.AsMemory(done, n), cancellationToken).ConfigureAwait(false);
            ThrowIfFailed(cqe, AdminOpcode.GetLogPage);
            done += n;
        }
        return page;
    }

    public async Task<byte[]> IdentifyAsync(byte cns, uint nsid = 0, byte csi = 0, CancellationToken cancellationToken = default)
    {
        var page = new byte[IdentifyPages.PageSize];
        var cqe = await _admin.ExecuteAsync(NvmeCommands.Identify(cns, nsid, 0, csi), page, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, AdminOpcode.Identify);
        return page;
    }

    /// <summary>Get Features; returns DW0.</summary>
    public async Task<uint> GetFeaturesAsync(byte featureId, uint select = 0, uint cdw11 = 0, CancellationToken cancellationToken = default)
    {
        var cqe = await _admin.ExecuteAsync(NvmeCommands.GetFeatures(featureId, select, cdw11), default, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, AdminOpcode.GetFeatures);
        return (uint)cqe.Result;
    }

    /// <summary>Set Features; returns DW0 (e.g. the queues granted for Number of Queues).</summary>
    public async Task<uint> SetFeaturesAsync(byte featureId, uint value, CancellationToken cancellationToken = default)
    {
        var cqe = await _admin.ExecuteAsync(NvmeCommands.SetFeatures(featureId, value), default, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, AdminOpcode.SetFeatures);
        return (uint)cqe.Result;
    }

    public async Task<ulong> GetPropertyAsync(uint offset, bool eightBytes, CancellationToken cancellationToken = default)
    {
        var cqe = await _admin.ExecuteAsync(NvmeCommands.PropertyGet(offset, eightBytes), default, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, AdminOpcode.Fabrics);
        return cqe.Result;
    }

    public async Task SetPropertyAsync(uint offset, ulong value, bool eightBytes = false, CancellationToken cancellationToken = default)
    {
        var cqe = await _admin.ExecuteAsync(NvmeCommands.PropertySet(offset, value, eightBytes), default, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, AdminOpcode.Fabrics);
    }

    public async Task KeepAliveAsync(CancellationToken cancellationToken = default)
    {
        var cqe = await _admin.ExecuteAsync(NvmeCommands.KeepAlive(), default, cancellationToken).ConfigureAwait(false);
        ThrowIfFailed(cqe, AdminOpcode.KeepAlive);
    }

    /// <summary>
    /// Reads log page 70h: the header for NUMREC, then header and entries together; retries while the generation
    /// counter changes between the two reads (the log changed under us).
    /// </summary>
    public async Task<DiscoveryLog> ReadDiscoveryLogAsync(CancellationToken cancellationToken = default)
    {
        const int attempts = 10;
        for (int i = 0; i < attempts; i++)
        {
            var header = await GetLogPageAsync(LogPageId.Discovery, DiscoveryLog.HeaderSize, cancellationToken: cancellationToken).ConfigureAwait(false);
            ulong genctr = BinaryPrimitives.ReadUInt64LittleEndian(header);
            ulong numrec = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8));
            if (numrec > (ulong)((int.MaxValue - DiscoveryLog.HeaderSize) / DiscoveryLog.EntrySize))
                throw new InvalidDataException($"discovery log claims {numrec} records");
            int size = DiscoveryLog.HeaderSize + (int)numrec * DiscoveryLog.EntrySize;
            var full = await GetLogPageAsync(LogPageId.Discovery, size, cancellationToken: cancellationToken).ConfigureAwait(false);
            var log = DiscoveryLog.Parse(full);
            if (log.GenerationCounter == genctr && log.RecordCount == numrec) return log;
        }
        throw new InvalidDataException($"discovery log kept changing over {attempts} reads");
    }

    private QueueConnection NextIoQueue()
    {
        var queues = _io;
        if (queues.Length == 0) throw new InvalidOperationException("this controller has no I/O queues");
        // Round robin: cheap and spreads load without a per-thread mapping.
        uint next = (uint)Interlocked.Increment(ref _nextQueue);
        return queues[next % (uint)queues.Length];
    }

    private static void WriteDsmRanges(Span<byte> destination, IReadOnlyList<LbaRange> ranges)
    {
        destination.Clear();
        for (int i = 0; i < ranges.Count; i++)
        {
            var r = destination.Slice(i * DsmRangeSize, DsmRangeSize);
            // Context attributes (0..3) stay 0; length in blocks (4..7); starting LBA (8..15).
            BinaryPrimitives.WriteUInt32LittleEndian(r[4..], ranges[i].Blocks);
            BinaryPrimitives.WriteUInt64LittleEndian(r[8..], ranges[i].Slba);
        }
    }

    private static void ThrowIfFailed(in CompletionEntry cqe, byte opcode)
    {
        if (!cqe.Status.IsSuccess) throw new NvmeException(cqe.Status, $"command {opcode:X2}h failed");
    }
}
