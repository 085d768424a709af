using BenchmarkDotNet.Attributes;
using Hashing = System.IO.Hashing;
using Duroslight.Core;

namespace Duroslight.Bench;

/// <summary>
/// CRC32C as the digests and the GFTL's records use it: the project's loop over <c>BitOperations.Crc32C</c>
/// (8 bytes per SSE4.2 instruction) against System.IO.Hashing's CRC-32C parameter set (one call, and an instance as
/// a receiver keeps one per connection), from PDU header sizes (24, 72) to a 4 KiB block and a 128 KiB chunk.
/// Setup checks all give the same value, so a wrong answer is never the fast one. On a shared, loaded machine
/// compare the Min column: noise only ever adds time.
/// </summary>
[MinColumn, MedianColumn]
public class Crc32CBenchmarks
{
    private readonly Hashing.Crc32 _running = new(Hashing.Crc32ParameterSet.Crc32C);
    private byte[] _data = [];

    [Params(24, 72, 256, 4096, 128 * 1024)]
    public int Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = new byte[Bytes];
        new Random(42).NextBytes(_data);
        if (BitOperationsLoop() != IoHashing() || BitOperationsLoop() != IoHashingInstance())
            throw new InvalidOperationException("System.IO.Hashing's CRC-32C disagrees with BitOperations.Crc32C");
    }

    [Benchmark(Baseline = true)]
    public uint BitOperationsLoop() => Crc32C.ComputeByInstruction(_data);

    [Benchmark]
    public uint IoHashing() => Hashing.Crc32.HashToUInt32(Hashing.Crc32ParameterSet.Crc32C, _data);

    /// <summary>As a receiver folds a data digest chunk by chunk: one instance per connection, reset per PDU.</summary>
    [Benchmark]
    public uint IoHashingInstance()
    {
        _running.Reset();
        _running.Append(_data);
        return _running.GetCurrentHashAsUInt32();
    }
}
