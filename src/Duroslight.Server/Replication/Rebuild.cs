using System.Diagnostics;
using System.Runtime.CompilerServices;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Reactor;
using Duroslight.Storage.Chunking;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Replication;

/// <summary>
/// The primary brings one replica outside the in-sync set back (docs/ARCHITECTURE.md, "Rebuild"): the node becomes a
/// forwarding target first (it gets every host write from then on; a failure drops it again), then every chunk its
/// <see cref="DirtyTrack"/> marks is copied from the local replica on the shard that owns it (for a new or wiped
/// replica the track marks them all), and each copied chunk's bit is cleared, so the sync point saved next is the
/// progress a new primary resumes from. Then one etcd transaction adds the node to the in-sync set. A chunk that
/// reads as zeros goes as a deallocate (reads as zeros there too, DLFEAT 001b), so a sparse volume stays sparse on the
/// replica. Rate-limited to <see cref="BytesPerSecond"/> of chunks (copied or deallocated) so host I/O keeps the rest.
/// </summary>
internal sealed class Rebuild(VolumeReplication volume, PeerLink link, DirtyTrack track, long sizeBytes, int blockSize, long bytesPerSecond)
{
    /// <summary>Chunk copies in flight at once (each holds a 128 KiB buffer).</summary>
    private const int Window = 4;
    private readonly CancellationTokenSource _cancel = new();
    private long _total = -1, _done, _copied, _startedAt;

    public Guid VolumeId => volume.VolumeId;

    public int Node => link.Node;

    public long BytesPerSecond => bytesPerSecond;

    /// <summary>Chunks to copy: the track's dirty chunks when the copy started (all of the volume's for a full copy).</summary>
    public long ChunksTotal => Volatile.Read(ref _total) is var total and >= 0 ? total : track.Map.Count();

    /// <summary>Chunks not copied yet (a chunk a host write makes dirty again ahead of the copy adds none).</summary>
    public long ChunksLeft => Math.Max(0, ChunksTotal - Volatile.Read(ref _done));

    /// <summary>Chunks copied (or deallocated) so far.</summary>
    public long ChunksDone => Volatile.Read(ref _done);

    /// <summary>Bytes sent to the replica (written chunks; a deallocated chunk sends none).</summary>
    public long BytesCopied => Volatile.Read(ref _copied);

    internal DirtyTrack Track => track;

    /// <summary>Only the chunks the replica missed (false: every chunk, a new or wiped replica).</summary>
    public bool Dirty => !track.Full;

    /// <summary>Started from a sync point in etcd (a previous primary's map, or this node's before a restart).</summary>
    public bool Resumed => track.Resumed;

    /// <summary>Chunks handled per second since the copy started, in MiB/s (written or deallocated alike), and the seconds left at that pace.</summary>
    public (double MiBPerSecond, double EtaSeconds) Pace()
    {
        double seconds = Stopwatch.GetElapsedTime(Volatile.Read(ref _startedAt)).TotalSeconds;
        long done = ChunksDone;
        if (Volatile.Read(ref _startedAt) == 0 || done == 0 || seconds <= 0) return (0, -1);
        double chunksPerSecond = done / seconds;
        return (chunksPerSecond * ChunkMap.ChunkSize / (1 << 20), ChunksLeft / chunksPerSecond);
    }

    /// <summary>Stops the copy between chunks (this node is no longer the primary).</summary>
    public void Cancel() => _cancel.Cancel();

    /// <summary>True once the node is back in the in-sync set (<paramref name="joinInEtcd"/> succeeded).</summary>
    public async Task<bool> RunAsync(Func<Task<bool>> joinInEtcd)
    {
        if (!volume.StartRebuilding(link)) return false;
        // Every host write admitted from here on goes to the node. One admitted before it is in its chunk's overlap
        // gate (or done) already, so the chunk's copy, posted to the same shard later, starts after it and reads it.
        var copies = new ChunkCopy[Window];
        var pending = new Task<bool>?[Window];
        for (int i = 0; i < Window; i++) copies[i] = new ChunkCopy(link, volume.Nsid, blockSize, this);
        var clock = Stopwatch.StartNew();
        Volatile.Write(ref _startedAt, Stopwatch.GetTimestamp());
        Volatile.Write(ref _total, track.Map.Count());
        long issued = 0;
        for (long chunk = track.Map.NextSet(0); chunk >= 0; chunk = track.Map.NextSet(chunk + 1), issued++)
        {
            int slot = (int)(issued % Window);
            if (pending[slot] is { } previous && !await Done(previous).ConfigureAwait(false)) return Abandon();
            if (_cancel.IsCancellationRequested || !volume.IsRebuilding(Node)) return Abandon();
            await PaceAsync(clock, issued * ChunkMap.ChunkSize).ConfigureAwait(false);
            long offset = chunk * ChunkMap.ChunkSize;
            var channels = volume.Channels;
            int shard = ChunkMap.OwnerShard(volume.PlacementId, chunk, channels.Length is > 0 and var n ? n : 1);
            if ((uint)shard >= (uint)channels.Length || channels[shard] is not { } channel) return Abandon();
            pending[slot] = copies[slot].Copy(channel, offset, (int)Math.Min(ChunkMap.ChunkSize, sizeBytes - offset));
        }
        foreach (var task in pending)
            if (task is not null && !await Done(task).ConfigureAwait(false)) return Abandon();
        return await volume.TryJoinAsync(Node, joinInEtcd).ConfigureAwait(false) || Abandon();
    }

    private async Task<bool> Done(Task<bool> copy)
    {
        if (!await copy.ConfigureAwait(false)) return false;
        Interlocked.Increment(ref _done);
        return true;
    }

    /// <summary>The rebuild is over without a join: the node gets no more writes (a later pass goes on from the chunks still dirty).</summary>
    public bool Abandon()
    {
        volume.StopRebuilding(Node);
        return false;
    }

    /// <summary>Waits until <paramref name="bytes"/> more are within the rate.</summary>
    private async Task PaceAsync(Stopwatch clock, long bytes)
    {
        if (bytesPerSecond <= 0) return;
        long dueMs = bytes * 1000 / bytesPerSecond;
        long aheadMs = dueMs - clock.ElapsedMilliseconds;
        if (aheadMs > 0) await Task.Delay(TimeSpan.FromMilliseconds(aheadMs)).ConfigureAwait(false);
    }

    internal void CountCopied(int bytes) => Interlocked.Add(ref _copied, bytes);

    /// <summary>
    /// One chunk's copy on its owning shard: it waits its turn in the channel's overlap gate like any change of that
    /// range (host writes overlapping it wait for it, and it for them), reads the local chunk, and sends it to the node
    /// as a Write (or a deallocate if it is all zeros) on the shard's peer queue; once the node has it, the chunk's
    /// dirty bit is cleared, still inside the gate, so a later write that fails to reach the node sets it again after.
    /// Reused for chunk after chunk.
    /// </summary>
    private sealed class ChunkCopy(PeerLink link, uint nsid, int blockSize, Rebuild owner) : IShardWork, IGatedOp, IForwardOp
    {
        private readonly Memory<byte> _buffer = AlignedBuffer(ChunkMap.ChunkSize);
        private readonly byte[] _range = new byte[ReplicationOp.DsmRangeSize];
        private ReplicatedChannel _channel = null!;
        private TaskCompletionSource<bool> _done = new();
        private ValueTaskAwaiter<StorageResult> _read;
        private Action? _afterRead;

        public long Start { get; private set; }

        public long End { get; private set; }

        public NvmeCommand Command { get; private set; }

        public Memory<byte> Data { get; private set; }

        /// <summary>
        /// <paramref name="length"/> bytes at a 4 KiB-aligned address of a pinned array: a sparse store reads with
        /// O_DIRECT, which refuses (EINVAL) a buffer that is not aligned. Pinned, so it never moves; managed, so a copy
        /// still in flight when its rebuild gives up keeps it alive.
        /// </summary>
        private static unsafe Memory<byte> AlignedBuffer(int length)
        {
            const int Alignment = 4096;
            byte[] array = GC.AllocateArray<byte>(length + Alignment, pinned: true);
            int skew = (int)((nuint)Unsafe.AsPointer(ref array[0]) & (Alignment - 1));
            return array.AsMemory(skew == 0 ? 0 : Alignment - skew, length);
        }

        /// <summary>Control path: copies [offset, offset + length); the task says whether the node has it.</summary>
        public Task<bool> Copy(ReplicatedChannel channel, long offset, int length)
        {
            _channel = channel;
            Start = offset;
            End = offset + length;
            _done = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            channel.Shard.Post(this);
            return _done.Task;
        }

        /// <summary>On the shard: take a turn in the gate.</summary>
        public void Execute() => _channel.AdmitCopy(this);

        /// <summary>On the shard: nothing overlapping is in flight; read the chunk as it stands now.</summary>
        public void Begin()
        {
            var read = _channel.Local.ReadAsync(Start, _buffer[..(int)(End - Start)]);
            if (read.IsCompleted)
            {
                AfterRead(read.Result);
                return;
            }
            _read = read.GetAwaiter();
            _read.UnsafeOnCompleted(_afterRead ??= () => AfterRead(_read.GetResult()));
        }

        public void RemoteDone(PeerLink from, bool ok) => Finish(ok);

        private void AfterRead(StorageResult result)
        {
            _read = default;
            if (result != StorageResult.Ok)
            {
                Finish(false);
                return;
            }
            int length = (int)(End - Start);
            ulong lba = (ulong)(Start / blockSize);
            int blocks = length / blockSize;
            if (_buffer.Span[..length].ContainsAnyExcept((byte)0))
            {
                Command = NvmeCommands.Write(nsid, lba, blocks);
                Data = _buffer[..length];
            }
            else
            {
                Command = NvmeCommands.DatasetManagement(nsid, 1);
                Data = ReplicationOp.DsmRange(_range, lba, (uint)blocks);
            }
            if (!link.Queues[_channel.Shard.Index].Submit(this)) Finish(false);
        }

        /// <summary>On the shard: leave the gate (overlapping host writes that waited start now), then report.</summary>
        private void Finish(bool ok)
        {
            if (ok)
            {
                owner.Track.Map.Clear(Start / ChunkMap.ChunkSize);
                owner.Track.Changed();
                if (Command.Opcode == IoOpcode.Write) owner.CountCopied(Data.Length);
            }
            _channel.Exited(this);
            Data = default;
            _done.SetResult(ok);
        }
    }
}
