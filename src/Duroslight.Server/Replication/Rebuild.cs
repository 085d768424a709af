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
/// forwarding target first (it gets every host write from then on; a failure drops it again), then every chunk of the
/// volume is copied from the local replica on the shard that owns it, then one etcd transaction adds the node to the
/// in-sync set. The store cannot say which chunks were ever written, so every chunk is read; a chunk that reads as
/// zeros goes as a deallocate (reads as zeros there too, DLFEAT 001b), so a sparse volume stays sparse on the replica.
/// Rate-limited to <see cref="BytesPerSecond"/> of chunks (copied or deallocated) so host I/O keeps the rest.
/// </summary>
internal sealed class Rebuild(VolumeReplication volume, PeerLink link, long sizeBytes, int blockSize, long bytesPerSecond)
{
    /// <summary>Chunk copies in flight at once (each holds a 128 KiB buffer).</summary>
    private const int Window = 4;
    private readonly CancellationTokenSource _cancel = new();
    private long _left = -1, _copied, _startedAt;

    public Guid VolumeId => volume.VolumeId;

    public int Node => link.Node;

    public long BytesPerSecond => bytesPerSecond;

    public long ChunksTotal => (sizeBytes + ChunkMap.ChunkSize - 1) / ChunkMap.ChunkSize;

    /// <summary>Chunks not copied yet (all of them until the copy starts).</summary>
    public long ChunksLeft => Volatile.Read(ref _left) is var left and >= 0 ? left : ChunksTotal;

    /// <summary>Bytes sent to the replica (written chunks; a deallocated chunk sends none).</summary>
    public long BytesCopied => Volatile.Read(ref _copied);

    /// <summary>Chunks handled per second since the copy started, in MiB/s (written or deallocated alike), and the seconds left at that pace.</summary>
    public (double MiBPerSecond, double EtaSeconds) Pace()
    {
        double seconds = Stopwatch.GetElapsedTime(Volatile.Read(ref _startedAt)).TotalSeconds;
        long done = ChunksTotal - ChunksLeft;
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
        for (int i = 0; i < Window; i++) copies[i] = new ChunkCopy(link, volume.Nsid, blockSize) { Owner = this };
        var clock = Stopwatch.StartNew();
        Volatile.Write(ref _startedAt, Stopwatch.GetTimestamp());
        long total = ChunksTotal;
        Volatile.Write(ref _left, total);
        for (long chunk = 0; chunk < total; chunk++)
        {
            int slot = (int)(chunk % Window);
            if (pending[slot] is { } previous && !await Done(previous).ConfigureAwait(false)) return Abandon();
            if (_cancel.IsCancellationRequested || !volume.IsRebuilding(Node)) return Abandon();
            await PaceAsync(clock, chunk * ChunkMap.ChunkSize).ConfigureAwait(false);
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
        Interlocked.Decrement(ref _left);
        return true;
    }

    /// <summary>The rebuild is over without a join: the node gets no more writes (a later pass starts again).</summary>
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
    /// as a Write (or a deallocate if it is all zeros) on the shard's peer queue. Reused for chunk after chunk.
    /// </summary>
    private sealed class ChunkCopy(PeerLink link, uint nsid, int blockSize) : IShardWork, IGatedOp, IForwardOp
    {
        private readonly byte[] _buffer = GC.AllocateArray<byte>(ChunkMap.ChunkSize, pinned: true);
        private readonly byte[] _range = new byte[ReplicationOp.DsmRangeSize];
        private ReplicatedChannel _channel = null!;
        private TaskCompletionSource<bool> _done = new();
        private ValueTaskAwaiter<StorageResult> _read;
        private Action? _afterRead;

        public long Start { get; private set; }

        public long End { get; private set; }

        public NvmeCommand Command { get; private set; }

        public Memory<byte> Data { get; private set; }

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
            var read = _channel.Local.ReadAsync(Start, _buffer.AsMemory(0, (int)(End - Start)));
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
            if (_buffer.AsSpan(0, length).ContainsAnyExcept((byte)0))
            {
                Command = NvmeCommands.Write(nsid, lba, blocks);
                Data = _buffer.AsMemory(0, length);
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
            _channel.Exited(this);
            if (ok && Command.Opcode == IoOpcode.Write) Owner?.CountCopied(Data.Length);
            Data = default;
            _done.SetResult(ok);
        }

        public Rebuild? Owner { get; init; }
    }
}
