using System.Buffers.Binary;
using Duroslight.Host;

namespace Duroslight.Soak;

/// <summary>
/// One host process: until its deadline, sessions of connect (default or aux-1 subsystem, 1-2 I/O queues, random
/// digests), a random number of operations on 4 lanes at once, then disconnect. The worker owns a stripe of the
/// namespace, each lane a quarter of it, so every block's expected content is known: its last write's version, or
/// zeros after write-zeroes/deallocate. Every read is checked, and a last pass reads the whole stripe back.
/// </summary>
internal sealed class SoakWorker(SoakOptions o)
{
    private const int Lanes = 4;
    private readonly Random _random = new(o.Seed);
    private uint[] _versions = [];
    private long _firstBlock, _laneBlocks;
    private int _blockSize;
    private long _ops, _bytes, _sessions, _verifiedBlocks;

    public async Task<int> RunAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(o.Seconds);
        while (DateTime.UtcNow < deadline)
        {
            await SessionAsync(deadline);
        }

        await using (var last = await ConnectAsync(o.Nqn, 1))
        {
            for (int lane = 0; lane < Lanes; lane++) await ReadAndCheckAsync(last, lane, 0, _laneBlocks);
            await last.DisconnectAsync();
        }

        Console.WriteLine($"worker {o.Id}: {_sessions} sessions, {_ops} operations, {_bytes >> 20} MiB moved, {_verifiedBlocks} blocks verified, no mismatch");
        return 0;
    }

    private async Task SessionAsync(DateTime deadline)
    {
        string nqn = _random.Next(4) == 0 ? o.Nqn + ".aux-1" : o.Nqn;
        await using var host = await ConnectAsync(nqn, 1 + _random.Next(2));
        _sessions++;
        int ops = 20 + _random.Next(180);
        var lanes = new Task[Lanes];
        for (int lane = 0; lane < Lanes; lane++)
        {
            lanes[lane] = LaneAsync(host, lane, ops / Lanes, new Random(_random.Next()), deadline);
        }

        await Task.WhenAll(lanes);
        await host.DisconnectAsync();
    }

    private async Task<NvmeTcpController> ConnectAsync(string nqn, int queues)
    {
        var host = await NvmeTcpController.ConnectAsync("127.0.0.1", o.Port, nqn, $"nqn.2014-08.org.nvmexpress:uuid:50a50a50-0000-4000-8000-{o.Id:D12}",
            new NvmeTcpControllerOptions { IoQueues = queues, HeaderDigest = _random.Next(2) == 0, DataDigest = _random.Next(2) == 0 });
        NamespaceDetails ns = Find(host);
        if (_versions.Length == 0) Layout(ns);
        return host;
    }

    private NamespaceDetails Find(NvmeTcpController host)
    {
        foreach (NamespaceDetails ns in host.Namespaces)
        {
            if (ns.Nsid == o.Nsid) return ns;
        }

        throw new InvalidOperationException($"worker {o.Id}: namespace {o.Nsid} is not visible");
    }

    /// <summary>This worker's stripe: 1/workers of the namespace, at most 64 MiB, cut into lanes.</summary>
    private void Layout(NamespaceDetails ns)
    {
        _blockSize = ns.BlockSize;
        long stripe = Math.Min((long)ns.BlockCount / o.Workers, (64L << 20) / _blockSize);
        _laneBlocks = stripe / Lanes;
        _firstBlock = o.Id * stripe;
        _versions = new uint[_laneBlocks * Lanes];
    }

    private async Task LaneAsync(NvmeTcpController host, int lane, int ops, Random random, DateTime deadline)
    {
        var buffer = new byte[64 * _blockSize];
        for (int i = 0; i < ops && DateTime.UtcNow < deadline; i++)
        {
            int blocks = 1 << random.Next(7); // 1..64 blocks: 4 KiB .. 256 KiB with 4 KiB blocks
            long at = random.NextInt64(_laneBlocks - blocks + 1);
            int op = random.Next(100);
            if (op < 45) await WriteAsync(host, lane, at, blocks, buffer, fua: op == 0);
            else if (op < 85) await ReadAndCheckAsync(host, lane, at, blocks);
            else if (op < 92) await ZeroAsync(host, lane, at, blocks, deallocate: op % 2 == 0);
            else if (op < 96) await DeallocateAsync(host, lane, at, blocks);
            else await host.FlushAsync(o.Nsid);
            _ops++;
        }
    }

    private async Task WriteAsync(NvmeTcpController host, int lane, long at, int blocks, byte[] buffer, bool fua)
    {
        for (int b = 0; b < blocks; b++)
        {
            long index = (lane * _laneBlocks) + at + b;
            Fill(buffer.AsSpan(b * _blockSize, _blockSize), Lba(lane, at + b), _versions[index] + 1);
        }

        await host.WriteAsync(o.Nsid, (ulong)Lba(lane, at), blocks, buffer.AsMemory(0, blocks * _blockSize), fua);
        for (int b = 0; b < blocks; b++) _versions[(lane * _laneBlocks) + at + b]++;
        _bytes += blocks * _blockSize;
    }

    private async Task ZeroAsync(NvmeTcpController host, int lane, long at, int blocks, bool deallocate)
    {
        await host.WriteZeroesAsync(o.Nsid, (ulong)Lba(lane, at), blocks, deallocate);
        Forget(lane, at, blocks);
    }

    private async Task DeallocateAsync(NvmeTcpController host, int lane, long at, int blocks)
    {
        await host.DeallocateAsync(o.Nsid, [new LbaRange((ulong)Lba(lane, at), (uint)blocks)]);
        Forget(lane, at, blocks);
    }

    /// <summary>Those blocks now read as zeros (write zeroes; deallocate, which the target reports as reading zeros).</summary>
    private void Forget(int lane, long at, int blocks)
    {
        for (int b = 0; b < blocks; b++) _versions[(lane * _laneBlocks) + at + b] = 0;
    }

    private async Task ReadAndCheckAsync(NvmeTcpController host, int lane, long at, long count)
    {
        var buffer = new byte[64 * _blockSize];
        var expected = new byte[_blockSize];
        for (long done = 0; done < count;)
        {
            int blocks = (int)Math.Min(64, count - done);
            await host.ReadAsync(o.Nsid, (ulong)Lba(lane, at + done), blocks, buffer.AsMemory(0, blocks * _blockSize));
            for (int b = 0; b < blocks; b++)
            {
                long lba = Lba(lane, at + done + b);
                uint version = _versions[(lane * _laneBlocks) + at + done + b];
                Fill(expected, lba, version);
                if (!buffer.AsSpan(b * _blockSize, _blockSize).SequenceEqual(expected))
                {
                    uint found = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan((b * _blockSize) + 12));
                    throw new InvalidDataException($"worker {o.Id}: LBA {lba} holds version {found} (first bytes {Convert.ToHexString(buffer, b * _blockSize, 16)}), expected version {version}");
                }
            }

            _verifiedBlocks += blocks;
            _bytes += blocks * _blockSize;
            done += blocks;
        }
    }

    private long Lba(int lane, long at) => _firstBlock + (lane * _laneBlocks) + at;

    /// <summary>Version 0 is zeros; otherwise a header (worker, LBA, version) and bytes derived from them.</summary>
    private void Fill(Span<byte> block, long lba, uint version)
    {
        if (version == 0)
        {
            block.Clear();
            return;
        }

        ulong x = ((ulong)lba * 0x9E3779B97F4A7C15UL) ^ ((ulong)version << 32) ^ (ulong)o.Id;
        for (int i = 16; i + 8 <= block.Length; i += 8)
        {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            BinaryPrimitives.WriteUInt64LittleEndian(block[i..], x);
        }

        BinaryPrimitives.WriteInt32LittleEndian(block, o.Id);
        BinaryPrimitives.WriteInt64LittleEndian(block[4..], lba);
        BinaryPrimitives.WriteUInt32LittleEndian(block[12..], version);
    }
}
