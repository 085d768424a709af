using System.Diagnostics;
using Duroslight.Core.Interop;
using Duroslight.Reactor.Interop;

namespace Duroslight.Reactor;

/// <summary>
/// One CPU's worth of the data path: a thread pinned to its core that owns one io_uring ring, the connections and
/// chunk work handed to it, and its buffers. Everything a shard owns is touched only by its thread; other threads
/// reach it through <see cref="Post"/> (a lock-free queue plus an eventfd wake-up while it sleeps).
/// </summary>
public sealed unsafe class Shard
{
    public static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(100);

    private const int RingEntries = 4096;
    private const int InboxCapacity = 1 << 16;
    private const int ReapBatch = 256;
    private const byte OpWakeRead = 1;

    // Connections receive into one provided-buffer ring per shard (buffer group 0) instead of a buffer each: memory
    // follows the data in flight, not the connection count, and a multishot receive stays armed across commands.
    private const int ReceiveGroup = 0;
    private const uint ReceiveBufferCount = 128;

    /// <summary>Size of one provided receive buffer: a receive completes with at most this many bytes.</summary>
    public const int ReceiveBufferSize = 64 * 1024;

    /// <summary>
    /// Sleep mode's idle spin bound: after the last work, a shard keeps polling the ring for at most this long
    /// before it sleeps, since a wake-up (eventfd or task-work, then the scheduler) costs about as much as a whole
    /// QD1 round trip. Adaptive: the window is twice the recent gap between going idle and the next work, so a
    /// host's back-to-back commands are caught spinning while sparse traffic (gaps past the bound) gets no spin and
    /// an idle shard uses no CPU. Worst case this costs the bound once per burst of work.
    /// </summary>
    public static readonly TimeSpan MaxIdleSpin = TimeSpan.FromMicroseconds(100);

    /// <summary>
    /// A polling iteration without work reads the clocks (idle spin, ticks) only once in this many: each read is a
    /// vDSO call that cost more than the rest of such an iteration (22% of the shard's samples at QD1,
    /// bench/README.md). The spin bound and the tick are late by at most this many empty iterations (microseconds).
    /// </summary>
    internal const int IdleClockStride = 32;

    [ThreadStatic]
    private static Shard? t_current;

    private readonly ShardQueue<IShardWork> _inbox = new(InboxCapacity);
    private readonly Queue<IShardWork> _local = new();
    private readonly List<IBatchedSender> _sendScheduled = [];
    private readonly List<IBatchedSender> _sending = [];
    private readonly List<IShardTicker> _tickers = [];
    private readonly List<IRingHandler?> _handlers = [];
    private readonly Stack<int> _freeTokens = new();
    private readonly ManualResetEventSlim _started = new();
    private readonly WakeHandler _wakeHandler;
    private readonly RingBlockIo _deviceIo;
    private readonly int _cpu;
    private Thread? _thread;
    private Ring? _ring;
    private nint _receiveRing;
    private byte* _receiveBase;
    private bool _multishotReceive;
    private Exception? _startError;
    private int _eventFd = -1;
    private ulong* _eventValue;
    private int _sleeping;
    private bool _woke;
    private int _wakePending;
    private volatile bool _stopRequested;
    private long _nextTickMs;
    private long _startedAt;
    private long _cpuNanoseconds;
    private long _allocatedBytes;
    private IdleSpin _idleSpin;
    private int _prepared;

    internal Shard(int index, int cpu, PollMode mode)
    {
        Index = index;
        _cpu = cpu;
        Mode = mode;
        _wakeHandler = new WakeHandler(this);
        _deviceIo = new RingBlockIo(this);
    }

    /// <summary>The shard whose thread is calling, or null off the reactor.</summary>
    public static Shard? Current => t_current;

    public int Index { get; }

    public PollMode Mode { get; }

    /// <summary>The CPU this shard's thread is pinned to (-1: not pinned).</summary>
    public int Cpu => _cpu;

    /// <summary>The ring's setup flags (for logs).</summary>
    public uint RingFlags => _ring?.SetupFlags ?? 0;

    /// <summary>
    /// CPU time of the shard's thread (user and kernel, so the ring's inline network work counts) and wall time since
    /// it started, sampled every tick; CPU over wall is the shard's utilisation.
    /// </summary>
    public (TimeSpan Cpu, TimeSpan Wall) LoopTime =>
        (TimeSpan.FromTicks(Volatile.Read(ref _cpuNanoseconds) / 100), _startedAt == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(_startedAt));

    /// <summary>Managed bytes this shard's thread has allocated, sampled every tick (the zero-allocation proof).</summary>
    public long AllocatedBytes => Volatile.Read(ref _allocatedBytes);

    /// <summary>
    /// The ring-backed device I/O of this shard, for storage channels (and installed as
    /// <see cref="Duroslight.Core.BlockIo.Current"/> on its thread). Only the shard's thread may submit through it.
    /// </summary>
    public IBlockIo DeviceIo => _deviceIo;

    internal bool IsOnThread => t_current == this;

    /// <summary>Runs <paramref name="work"/> on this shard: inline order after current work when called on it, else via the inbox.</summary>
    public void Post(IShardWork work)
    {
        if (t_current == this)
        {
            _local.Enqueue(work);
            return;
        }
        var spin = new SpinWait();
        while (!_inbox.TryEnqueue(work))
        {
            // Full inbox: the shard is overloaded; waiting here is the back-pressure.
            Wake();
            spin.SpinOnce();
        }
        Interlocked.MemoryBarrier();
        Wake();
    }

    /// <summary>Gives a handler a token for <c>user_data</c>. Shard thread only.</summary>
    public int Register(IRingHandler handler)
    {
        if (_freeTokens.TryPop(out int token))
        {
            _handlers[token] = handler;
            return token;
        }
        _handlers.Add(handler);
        return _handlers.Count - 1;
    }

    /// <summary>Frees a token; the handler must have no operation in flight. Shard thread only.</summary>
    public void Unregister(int token)
    {
        _handlers[token] = null;
        _freeTokens.Push(token);
    }

    /// <summary>Asks for <see cref="IBatchedSender.SendBatch"/> at the end of this loop iteration (once).</summary>
    public void ScheduleSend(IBatchedSender sender) => _sendScheduled.Add(sender);

    public void AddTicker(IShardTicker ticker) => _tickers.Add(ticker);

    public void RemoveTicker(IShardTicker ticker) => _tickers.Remove(ticker);

    public void SubmitAccept(int listenFd, int token, byte op) => Prepared(Uring.PrepAccept(Ring, listenFd, 1, UserData(token, op)));

    public void SubmitReceive(int fd, byte* buffer, int length, int token, byte op) =>
        Prepared(Uring.PrepRecv(Ring, fd, buffer, (uint)length, UserData(token, op)));

    /// <summary>
    /// Receives on <paramref name="fd"/> into the shard's provided buffers; the handler must be an
    /// <see cref="IReceiveHandler"/>. Multishot where the kernel has it (6.0+): one submission keeps receiving until
    /// a completion comes without <c>more</c>.
    /// </summary>
    public void SubmitReceiveSelect(int fd, int token, byte op) =>
        Prepared(Uring.PrepRecvSelect(Ring, fd, ReceiveGroup, _multishotReceive ? 1 : 0, UserData(token, op)));

    /// <summary>Cancels the operation submitted with (<paramref name="token"/>, <paramref name="targetOp"/>); it completes with -ECANCELED.</summary>
    public void SubmitCancel(int token, byte targetOp, byte op) =>
        Prepared(Uring.PrepCancel(Ring, UserData(token, targetOp), UserData(token, op)));

    public void SubmitSend(int fd, byte* buffer, int length, int token, byte op) =>
        Prepared(Uring.PrepSend(Ring, fd, buffer, (uint)length, UserData(token, op)));

    /// <summary>A gathering send; <paramref name="message"/> (a <see cref="SendMessage"/>) stays valid until it completes.</summary>
    public void SubmitSendMessage(int fd, SendMessage message, int token, byte op) =>
        Prepared(Uring.PrepSendMsg(Ring, fd, message.Header, UserData(token, op)));

    /// <summary>Cancels every operation in flight on <paramref name="fd"/>; they complete with -ECANCELED.</summary>
    public void SubmitCancel(int fd, int token, byte op) => Prepared(Uring.PrepCancelFd(Ring, fd, UserData(token, op)));

    internal void SubmitRead(int fd, byte* buffer, int length, long offset, int token, byte op) =>
        Prepared(Uring.PrepRead(Ring, fd, buffer, (uint)length, (ulong)offset, UserData(token, op)));

    internal void SubmitWrite(int fd, byte* buffer, int length, long offset, int token, byte op) =>
        Prepared(Uring.PrepWrite(Ring, fd, buffer, (uint)length, (ulong)offset, UserData(token, op)));

    /// <summary>A read into registered buffer <paramref name="slot"/> (<paramref name="buffer"/> lies inside it).</summary>
    internal void SubmitReadFixed(int fd, byte* buffer, int length, long offset, int slot, int token, byte op) =>
        Prepared(Uring.PrepReadFixed(Ring, fd, buffer, (uint)length, (ulong)offset, slot, UserData(token, op)));

    /// <summary>A write from registered buffer <paramref name="slot"/> (<paramref name="buffer"/> lies inside it).</summary>
    internal void SubmitWriteFixed(int fd, byte* buffer, int length, long offset, int slot, int token, byte op) =>
        Prepared(Uring.PrepWriteFixed(Ring, fd, buffer, (uint)length, (ulong)offset, slot, UserData(token, op)));

    /// <summary>Creates the ring's table of registered buffers; 0 or a negative errno. Shard thread only.</summary>
    internal int RegisterBufferTable(int slots) => Uring.RegisterBufferTable(Ring, (uint)slots);

    /// <summary>Puts a buffer into a slot of the table (null, 0 clears it); 0 or a negative errno. Shard thread only.</summary>
    internal int RegisterBuffer(int slot, byte* buffer, int length) => Uring.RegisterBuffer(Ring, (uint)slot, buffer, (nuint)length);

    internal void SubmitDataSync(int fd, int token, byte op) => Prepared(Uring.PrepDataSync(Ring, fd, UserData(token, op)));

    internal void Start()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = $"shard-{Index}" };
        _thread.UnsafeStart();
        _started.Wait();
        if (_startError is not null) throw _startError;
    }

    internal void Stop()
    {
        _stopRequested = true;
        LibC.Signal(_eventFd);
        _thread?.Join();
    }

    private nint Ring => _ring!.Handle;

    private static ulong UserData(int token, byte op) => ((ulong)op << 32) | (uint)token;

    private static void Check(int rc)
    {
        if (rc < 0) throw new InvalidOperationException($"io_uring submission queue is full (errno {-rc})");
    }

    /// <summary>Counts the iteration's own submissions: an iteration that queued none leaves the shard waiting on the outside.</summary>
    private void Prepared(int rc)
    {
        Check(rc);
        _prepared++;
    }

    private void Run()
    {
        try
        {
            Initialize();
        }
        catch (Exception e)
        {
            _startError = e;
            _started.Set();
            return;
        }
        _started.Set();
        try
        {
            Loop();
        }
        finally
        {
            BlockIo.InstallForCurrentThread(null);
            t_current = null;
            Uring.BufRingDestroy(_ring!.Handle, _receiveRing);
            _ring!.Dispose();
            LibC.Close(_eventFd);
            System.Runtime.InteropServices.NativeMemory.Free(_eventValue);
        }
    }

    private void Initialize()
    {
        if (_cpu >= 0)
        {
            int error = LibC.PinCurrentThread(_cpu);
            if (error != 0) throw new ReactorUnavailableException($"cannot pin shard {Index} to CPU {_cpu} (errno {error}); is the CPU online and allowed?");
        }
        // Created here: a single-issuer ring belongs to the thread that creates it.
        _ring = Reactor.Ring.Create(RingEntries);
        _receiveRing = Uring.BufRingCreate(Ring, ReceiveBufferCount, ReceiveBufferSize, ReceiveGroup, out int ringError);
        if (_receiveRing == 0)
        {
            _ring.Dispose();
            throw new ReactorUnavailableException($"io_uring cannot register a provided-buffer ring (errno {-ringError}); Duroslight needs Linux 5.19 or newer");
        }
        _receiveBase = Uring.BufRingBase(_receiveRing);
        _multishotReceive = Environment.OSVersion.Version >= new Version(6, 0);
        t_current = this;
        _deviceIo.CreateBufferTable();
        BlockIo.InstallForCurrentThread(_deviceIo);
        _eventFd = LibC.EventFd();
        _eventValue = (ulong*)System.Runtime.InteropServices.NativeMemory.Alloc(sizeof(ulong));
        _wakeHandler.Token = Register(_wakeHandler);
        ArmWakeRead();
        _nextTickMs = Environment.TickCount64;
    }

    private void Loop()
    {
        var completions = stackalloc Completion[ReapBatch];
        _startedAt = Stopwatch.GetTimestamp();
        _idleSpin = new IdleSpin(Stopwatch.Frequency * MaxIdleSpin.Ticks / TimeSpan.TicksPerSecond);
        long now = _startedAt;
        int idleIterations = 0;
        while (!_stopRequested)
        {
            _prepared = 0;
            bool worked = Reap(completions);
            worked |= RunWork();
            // A polling iteration that finds nothing costs little more than its clock reads, so it reads the clocks
            // only every IdleClockStride-th time; an iteration that worked or woke from a sleep always does.
            bool timed = worked || _woke || ++idleIterations % IdleClockStride == 0;
            if (timed) Tick();
            worked |= SendBatches();
            if (Mode == PollMode.Sleep)
            {
                if (timed || worked) now = Stopwatch.GetTimestamp();
                _idleSpin.Iterated(worked, queuedIo: _prepared != 0, now);
            }
            Wait(now);
        }
    }

    /// <summary>Dispatches every completion; true when any was for something other than the wake-up eventfd.</summary>
    private bool Reap(Completion* completions)
    {
        bool worked = false;
        int n;
        while ((n = Uring.Reap(Ring, completions, ReapBatch)) > 0)
        {
            for (int i = 0; i < n; i++)
            {
                worked |= (int)(uint)completions[i].UserData != _wakeHandler.Token;
                Dispatch(completions[i]);
            }
        }
        return worked;
    }

    private void Dispatch(in Completion c)
    {
        int token = (int)(uint)c.UserData;
        byte op = (byte)(c.UserData >> 32);
        var handler = (uint)token < (uint)_handlers.Count ? _handlers[token] : null;
        bool more = (c.Flags & Uring.CqeFlagMore) != 0;
        if ((c.Flags & Uring.CqeFlagBuffer) == 0)
        {
            handler?.OnCompletion(op, c.Result, more);
            return;
        }
        uint bufferId = c.Flags >> Uring.CqeBufferShift;
        (handler as IReceiveHandler)?.OnReceived(op, new ReadOnlySpan<byte>(_receiveBase + (nint)bufferId * ReceiveBufferSize, c.Result), more);
        Uring.BufRingRecycle(_receiveRing, bufferId);
    }

    private bool RunWork()
    {
        bool worked = false;
        while (_inbox.TryDequeue(out var work))
        {
            work.Execute();
            worked = true;
        }
        // Only what was queued before this pass: work that re-posts itself (the GFTL collector's slices) runs again
        // after the next reap, so the I/O it shares the shard with goes on in between.
        for (int n = _local.Count; n > 0 && _local.TryDequeue(out var work); n--)
        {
            work.Execute();
            worked = true;
        }
        return worked;
    }

    private void Tick()
    {
        long now = Environment.TickCount64;
        if (now < _nextTickMs) return;
        _nextTickMs = now + (long)TickInterval.TotalMilliseconds;
        Volatile.Write(ref _allocatedBytes, GC.GetAllocatedBytesForCurrentThread());
        Volatile.Write(ref _cpuNanoseconds, LibC.ThreadCpuNanoseconds());
        for (int i = _tickers.Count - 1; i >= 0; i--)
            if (i < _tickers.Count) _tickers[i].OnTick(now);
    }

    /// <summary>Runs the sends asked for this iteration; a sender may ask again (work it produced), next time round.</summary>
    private bool SendBatches()
    {
        if (_sendScheduled.Count == 0) return false;
        _sending.AddRange(_sendScheduled);
        _sendScheduled.Clear();
        foreach (var sender in _sending) sender.SendBatch();
        _sending.Clear();
        return true;
    }

    /// <summary>
    /// Submits what the iteration queued and, in sleep mode with nothing to do and the idle spin spent, waits in
    /// the kernel.
    /// </summary>
    private void Wait(long now)
    {
        long timeoutUs = 0;
        if (Mode == PollMode.Sleep && _local.Count == 0 && _sendScheduled.Count == 0 && !_idleSpin.ShouldSpin(now))
        {
            Interlocked.Exchange(ref _sleeping, 1);
            // Re-check after announcing sleep: a producer that missed the flag enqueued before we looked.
            if (_inbox.IsEmpty && !_stopRequested)
                timeoutUs = Math.Max(1, _nextTickMs - Environment.TickCount64) * 1000;
        }
        // A polling iteration checks first, without the GC transition a call that may block needs.
        int rc = timeoutUs > 0 || Uring.NeedsEnter(Ring) != 0 ? Uring.Submit(Ring, timeoutUs) : 0;
        Volatile.Write(ref _sleeping, 0);
        _woke = timeoutUs > 0;
        if (rc < 0 && rc != -LibC.EINTR && rc != -LibC.EAGAIN)
            throw new InvalidOperationException($"io_uring_enter failed with errno {-rc}");
    }

    private void Wake()
    {
        if (Volatile.Read(ref _sleeping) != 0 && Interlocked.Exchange(ref _wakePending, 1) == 0) LibC.Signal(_eventFd);
    }

    private void ArmWakeRead() =>
        Check(Uring.PrepRead(Ring, _eventFd, (byte*)_eventValue, sizeof(ulong), 0, UserData(_wakeHandler.Token, OpWakeRead)));

    /// <summary>The eventfd read completed: re-arm it, and let producers signal again.</summary>
    private sealed class WakeHandler(Shard shard) : IRingHandler
    {
        public int Token;

        public void OnCompletion(byte op, int result, bool more)
        {
            Volatile.Write(ref shard._wakePending, 0);
            if (!shard._stopRequested) shard.ArmWakeRead();
        }
    }
}
