using BenchmarkDotNet.Attributes;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Wire;

namespace Duroslight.Bench;

/// <summary>
/// The sans-IO engine's cost per command, without sockets or storage: a batch of 4 KiB writes (in-capsule) or
/// reads goes in as bytes, every storage request completes at once, the responses come out as bytes.
/// MemoryDiagnoser shows the managed bytes allocated per batch (the goal: 0 in steady state).
/// </summary>
[MemoryDiagnoser]
public class EngineBenchmarks
{
    private const int Batch = 32;
    private InMemoryQueue _queue = null!;
    private byte[] _writes = [];
    private byte[] _reads = [];
    private byte[] _reads128K = [];

    [GlobalSetup]
    public void Setup()
    {
        _queue = new InMemoryQueue(volumeBlocks: 1 << 18);
        var data = new byte[4096];
        Random.Shared.NextBytes(data);
        _writes = Stream(cid => InMemoryQueue.Capsule(
            InMemoryQueue.SqeBytes(IoOpcode.Write, cid, 1, SglTypes.InCapsuleData, 4096, cdw10: cid * 8u), data));
        _reads = Stream(cid => InMemoryQueue.Capsule(
            InMemoryQueue.SqeBytes(IoOpcode.Read, cid, 1, SglTypes.TransportDataBlock, 4096, cdw10: cid * 8u), []));
        _reads128K = Stream(cid => InMemoryQueue.Capsule(
            InMemoryQueue.SqeBytes(IoOpcode.Read, cid, 1, SglTypes.TransportDataBlock, 128 * 1024, cdw10: cid * 32u, cdw12: 31), []));
        // A benchmark of error paths would be meaningless: check the batches really succeed.
        ExpectSuccess(_writes, PduLayout.CapsuleRespHeaderSize);
        ExpectSuccess(_reads, PduLayout.DataHeaderSize + 4096 + PduLayout.CapsuleRespHeaderSize);
        ExpectSuccess(_reads128K, PduLayout.DataHeaderSize + 128 * 1024 + PduLayout.CapsuleRespHeaderSize);
        ExpectInPlace(_reads, 4096);
        ExpectInPlace(_reads128K, 128 * 1024);
    }

    /// <summary>The in-place queue sends the same amount (its bytes are compared with copied reads in the Protocol tests).</summary>
    private void ExpectInPlace(byte[] batch, int dataBytes)
    {
        long sent = InMemoryQueue.SendGathered(_queue.IoInPlace, batch);
        long expected = Batch * (long)(PduLayout.DataHeaderSize + dataBytes + PduLayout.CapsuleRespHeaderSize);
        if (sent != expected) throw new InvalidOperationException($"in-place reads sent {sent} bytes, expected {expected}");
    }

    private void ExpectSuccess(byte[] batch, int bytesPerCommand)
    {
        var c = _queue.Io;
        c.Receive(batch, 0);
        while (c.TryTakeStorageRequest(out var r)) c.CompleteStorage(r, NvmeStatus.Success);
        var output = c.PendingOutput.Span;
        if (output.Length != Batch * bytesPerCommand) throw new InvalidOperationException($"unexpected output of {output.Length} bytes");
        for (int i = 1; i <= Batch; i++)
        {
            var cqe = CompletionEntry.Read(output[(i * bytesPerCommand - PduLayout.CapsuleRespHeaderSize + PduLayout.CommonHeaderSize)..]);
            if (!cqe.Status.IsSuccess) throw new InvalidOperationException($"command {cqe.CommandId} failed: {cqe.Status}");
        }
        c.ConsumeOutput(output.Length);
    }

    [Benchmark(OperationsPerInvoke = Batch)]
    public int Write4KInCapsule() => InMemoryQueue.Send(_queue.Io, _writes);

    [Benchmark(OperationsPerInvoke = Batch)]
    public int Read4K() => InMemoryQueue.Send(_queue.Io, _reads);

    /// <summary>Read data sent from its buffer by gathering sends instead of copied into the output.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public long Read4KInPlace() => InMemoryQueue.SendGathered(_queue.IoInPlace, _reads);

    [Benchmark(OperationsPerInvoke = Batch)]
    public int Read128K() => InMemoryQueue.Send(_queue.Io, _reads128K);

    [Benchmark(OperationsPerInvoke = Batch)]
    public long Read128KInPlace() => InMemoryQueue.SendGathered(_queue.IoInPlace, _reads128K);

    [Benchmark]
    public uint Crc32COf128KiB() => Crc32C.Compute(_bulk);

    private readonly byte[] _bulk = new byte[128 * 1024];

    private static byte[] Stream(Func<ushort, byte[]> pdu)
    {
        var all = new List<byte>();
        for (ushort cid = 0; cid < Batch; cid++) all.AddRange(pdu(cid));
        return [.. all];
    }
}
