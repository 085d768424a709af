using Duroslight.Core;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// A device with a volatile write cache that loses power. Writes and fdatasyncs pass through to the files, but every
/// write not yet covered by a completed sync of its file is remembered with the bytes it replaced. At the chosen
/// moment (the Nth write or sync), the power fails: every remembered write is undone (newest first, so the files
/// hold exactly what the last completed syncs made durable), then one of those writes, or the write in flight,
/// is torn back in: a random subset of its 512-byte sectors lands. From then on every I/O fails with EIO, so the
/// store being abandoned cannot write anything more. Files must be opened without O_DIRECT (pre-images are read
/// into unaligned buffers); works on the thread it is installed on, with synchronous completions.
/// </summary>
internal sealed class PowerLossBlockIo(Random random, long failAtOperation) : IBlockIo
{
    private const int Sector = 512;
    private const int EIO = 5;
    private readonly IBlockIo _inner = SyncBlockIo.Instance;
    private readonly List<Unsynced> _unsynced = [];
    private long _operations;

    /// <summary>True once the power has failed.</summary>
    public bool Failed { get; private set; }

    /// <summary>Writes and syncs seen so far.</summary>
    public long Operations => _operations;

    /// <summary>Sectors of the torn write that landed, and of how many (for the test's log).</summary>
    public string TornSummary { get; private set; } = "nothing torn";

    public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset) =>
        Failed ? new(-EIO) : _inner.ReadAsync(file, buffer, offset);

    public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset)
    {
        if (Failed)
        {
            return new(-EIO);
        }

        var write = new Unsynced(file, offset, new byte[buffer.Length], buffer.ToArray());
        RandomAccess.Read(file, write.Before, offset);
        if (++_operations == failAtOperation)
        {
            FailPower(write);
            return new(-EIO);
        }

        int result = _inner.WriteAsync(file, buffer, offset).GetAwaiter().GetResult();
        if (result == buffer.Length)
        {
            _unsynced.Add(write);
        }

        return new(result);
    }

    public ValueTask<int> SyncAsync(SafeFileHandle file)
    {
        if (Failed)
        {
            return new(-EIO);
        }

        if (++_operations == failAtOperation)
        {
            FailPower(null); // the sync never completed: nothing it would have covered is durable
            return new(-EIO);
        }

        int result = _inner.SyncAsync(file).GetAwaiter().GetResult();
        if (result == 0)
        {
            _unsynced.RemoveAll(w => w.File == file);
        }

        return new(result);
    }

    /// <summary>Fails the power now (between operations), if it has not failed yet.</summary>
    public void FailNow()
    {
        if (!Failed)
        {
            FailPower(null);
        }
    }

    private void FailPower(Unsynced? inFlight)
    {
        Failed = true;
        for (int i = _unsynced.Count - 1; i >= 0; i--)
        {
            RandomAccess.Write(_unsynced[i].File, _unsynced[i].Before, _unsynced[i].Offset);
        }

        int candidates = _unsynced.Count + (inFlight is null ? 0 : 1);
        if (candidates > 0)
        {
            int pick = random.Next(candidates);
            Unsynced torn = pick < _unsynced.Count ? _unsynced[pick] : inFlight!;
            int sectors = torn.After.Length / Sector, landed = 0;
            for (int s = 0; s < sectors; s++)
            {
                if (random.Next(2) == 0)
                {
                    RandomAccess.Write(torn.File, torn.After.AsSpan(s * Sector, Sector), torn.Offset + (s * Sector));
                    landed++;
                }
            }

            TornSummary = $"{landed} of {sectors} sectors of a write at {torn.Offset} landed ({_unsynced.Count} unsynced writes dropped)";
        }

        _unsynced.Clear();
    }

    private sealed record Unsynced(SafeFileHandle File, long Offset, byte[] Before, byte[] After);
}
