using System.Threading.Tasks.Sources;
using Duroslight.Core;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// An <see cref="IBlockIo"/> for one test thread that holds device writes (and reads, if asked) in flight until the test
/// releases them (syncs run at once), so a test decides what is in flight when. Its operations are pooled: it
/// allocates nothing per I/O, so allocation tests can use it. Install it on the test thread, and run the test
/// without a synchronization context, so completions continue inline on that thread.
/// </summary>
internal sealed class HeldBlockIo : IBlockIo
{
    private readonly List<HeldWrite> _held = [];
    private readonly Stack<HeldWrite> _pool = new();

    /// <summary>Sizes of the device writes released so far (when <see cref="RecordSizes"/> is on).</summary>
    public List<int> WriteSizes { get; } = [];

    public bool RecordSizes { get; set; }

    /// <summary>Hold reads too (else they complete at once).</summary>
    public bool HoldReads { get; set; }

    /// <summary>Hold syncs too (else they complete at once).</summary>
    public bool HoldSyncs { get; set; }

    public int Held => _held.Count;

    /// <summary>The buffer of the held operation at <paramref name="index"/> (oldest first).</summary>
    public Memory<byte> HeldBuffer(int index) => _held[index].Buffer;

    public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset) =>
        HoldReads ? Hold(file, buffer, offset, read: true) : new(RandomAccess.Read(file, buffer.Span, offset));

    public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset) =>
        Hold(file, System.Runtime.InteropServices.MemoryMarshal.AsMemory(buffer), offset, read: false);

    public ValueTask<int> SyncAsync(SafeFileHandle file) => HoldSyncs ? Hold(file, default, 0, read: false, sync: true) : new(0);

    /// <summary>Performs the oldest held operation and completes it (its continuation runs here, inline).</summary>
    public void ReleaseOne() => Release(0);

    /// <summary>Performs the newest held operation (completions out of order).</summary>
    public void ReleaseNewest() => Release(_held.Count - 1);

    private void Release(int index)
    {
        HeldWrite write = _held[index];
        _held.RemoveAt(index);
        if (write.Sync)
        {
            write.Complete(0);
            return;
        }

        if (write.Read)
        {
            write.Complete(RandomAccess.Read(write.File, write.Buffer.Span, write.Offset));
            return;
        }

        RandomAccess.Write(write.File, write.Buffer.Span, write.Offset);
        if (RecordSizes)
        {
            WriteSizes.Add(write.Buffer.Length);
        }

        write.Complete(write.Buffer.Length);
    }

    /// <summary>Releases until nothing is held (completions may issue new writes).</summary>
    public void ReleaseAll()
    {
        while (_held.Count > 0)
        {
            ReleaseOne();
        }
    }

    private ValueTask<int> Hold(SafeFileHandle file, Memory<byte> buffer, long offset, bool read, bool sync = false)
    {
        HeldWrite write = _pool.Count > 0 ? _pool.Pop() : new HeldWrite(this);
        write.File = file;
        write.Buffer = buffer;
        write.Offset = offset;
        write.Read = read;
        write.Sync = sync;
        _held.Add(write);
        return new ValueTask<int>(write, write.Token);
    }

    private sealed class HeldWrite(HeldBlockIo owner) : IValueTaskSource<int>
    {
        private ManualResetValueTaskSourceCore<int> _core;

        public SafeFileHandle File = null!;
        public Memory<byte> Buffer;
        public bool Read;
        public bool Sync;
        public long Offset;

        public short Token => _core.Version;

        public void Complete(int result) => _core.SetResult(result);

        public int GetResult(short token)
        {
            int result = _core.GetResult(token);
            _core.Reset();
            File = null!;
            Buffer = default;
            owner._pool.Push(this);
            return result;
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
