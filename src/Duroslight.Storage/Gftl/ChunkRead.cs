using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using Duroslight.Storage.Devices;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// One read of blocks within a chunk: its runs (each unmapped, or contiguous on one device) are looked up together,
/// then every mapped run is read at once (a fragmented chunk costs one device round trip, not one per fragment),
/// straight into the caller's buffer when it is aligned for O_DIRECT, else through a bounce buffer. Pooled per
/// partition and awaited by the caller directly: no allocation per read.
/// </summary>
internal sealed class ChunkRead : IValueTaskSource<StorageResult>
{
    private readonly Partition _owner;
    private readonly Run[] _runs = new Run[GftlLayout.BlocksPerChunk];
    private ManualResetValueTaskSourceCore<StorageResult> _completion;
    private int _runCount;
    private int _pending;
    private int _failure;

    public ChunkRead(Partition owner)
    {
        _owner = owner;
        for (int i = 0; i < _runs.Length; i++)
        {
            _runs[i] = new Run(this);
        }
    }

    public Memory<byte> Destination;

    /// <summary>Set when the destination cannot take O_DIRECT reads; the runs land here and are copied.</summary>
    public NativeBuffer? Bounce;

    /// <summary>The read epoch this read registered in (only if it has mapped runs).</summary>
    public int Epoch;

    public int MappedRuns;

    /// <summary>The re-pack that takes this read's data once it is in (see <see cref="Partition.Repack"/>), or null.</summary>
    public RepackSlot? Repack;

    /// <summary>A re-pack's own read of a chunk into its slot: nobody awaits it, it goes back to the pool when done.</summary>
    public bool Internal;

    public short Token => _completion.Version;

    /// <summary>True when a device may read straight into <paramref name="buffer"/>: 4 KiB-aligned native memory.</summary>
    public static bool IsAligned(Memory<byte> buffer) =>
        MemoryMarshal.TryGetMemoryManager<byte, NativeBuffer>(buffer, out _, out int start, out _) && start % NativeBuffer.Alignment == 0;

    /// <summary>Under the partition's lock: the next run, <paramref name="blocks"/> from block <paramref name="first"/> of the destination.</summary>
    public void AddRun(int first, int blocks, long location)
    {
        Run run = _runs[_runCount++];
        run.First = first;
        run.Blocks = blocks;
        run.Location = location;
        MappedRuns += location == GftlLayout.Unmapped ? 0 : 1;
    }

    /// <summary>Outside the lock: zero-fills the unmapped runs and starts the device reads of the mapped ones.</summary>
    public void Start(GftlLog core)
    {
        _failure = 0;
        _pending = MappedRuns + 1; // held until every run is issued, so the last completion is the last one
        for (int i = 0; i < _runCount; i++)
        {
            Run run = _runs[i];
            if (run.Location == GftlLayout.Unmapped)
            {
                Slice(Destination, run).Span.Clear();
                continue;
            }

            Memory<byte> target = Slice(Bounce is null ? Destination : Bounce.Memory, run);
            run.Issue(core.DeviceOf(run.Location), target);
        }

        Finish(StorageResult.Ok);
    }

    public ValueTask<StorageResult> AsValueTask(short token) =>
        _completion.GetStatus(token) == ValueTaskSourceStatus.Pending ? new(this, token) : new(GetResult(token));

    public StorageResult GetResult(short token)
    {
        StorageResult result = _completion.GetResult(token);
        _completion.Reset();
        _owner.Recycle(this);
        return result;
    }

    public ValueTaskSourceStatus GetStatus(short token) => _completion.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _completion.OnCompleted(continuation, state, token, flags);

    /// <summary>Forgets the runs (before the read goes back to the pool).</summary>
    public void Clear()
    {
        _runCount = 0;
        MappedRuns = 0;
        Destination = default;
        Bounce = null;
        Repack = null;
        Internal = false;
    }

    private static Memory<byte> Slice(Memory<byte> buffer, Run run) =>
        buffer.Slice(run.First * GftlLayout.BlockSize, run.Blocks * GftlLayout.BlockSize);

    private void RunDone(Run run, StorageResult result)
    {
        if (result == StorageResult.Ok && Bounce is not null)
        {
            Slice(Bounce.Memory, run).CopyTo(Slice(Destination, run));
        }

        Finish(result);
    }

    /// <summary>One run (or the issuing itself) is over; the last one ends the read and completes it.</summary>
    private void Finish(StorageResult result)
    {
        if (result != StorageResult.Ok)
        {
            Interlocked.CompareExchange(ref _failure, (int)result, 0);
        }

        if (Interlocked.Decrement(ref _pending) == 0)
        {
            var outcome = (StorageResult)_failure;
            if (Repack is not null)
            {
                _owner.Repack(this, outcome == StorageResult.Ok);
            }

            _owner.EndRead(this);
            if (Internal)
            {
                _owner.Recycle(this);
                return;
            }

            _completion.SetResult(outcome);
        }
    }

    /// <summary>A mapped run's device read, continued without an async box.</summary>
    private sealed class Run
    {
        private readonly ChunkRead _read;
        private readonly Action _resume;
        private ValueTaskAwaiter<StorageResult> _awaiter;

        public Run(ChunkRead read)
        {
            _read = read;
            _resume = Resume;
        }

        public int First;
        public int Blocks;
        public long Location;

        public void Issue(GftlDevice device, Memory<byte> target)
        {
            ValueTask<StorageResult> read = BlockTransfer.ReadAsync(device.Handle, target, GftlLayout.ByteOffsetOf(Location));
            if (read.IsCompleted)
            {
                _read.RunDone(this, read.Result);
                return;
            }

            _awaiter = read.GetAwaiter();
            _awaiter.UnsafeOnCompleted(_resume);
        }

        private void Resume()
        {
            StorageResult result = _awaiter.GetResult();
            _awaiter = default;
            _read.RunDone(this, result);
        }
    }
}
