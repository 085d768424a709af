using System.Buffers.Binary;
using System.Diagnostics;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Host;

/// <summary>
/// An NVMe/TCP initiator for one controller: an admin queue plus I/O queues, each its own TCP connection with a
/// receive loop and a pending-command table, so many commands may be outstanding per queue. Connects as the Linux
/// host does (ICReq, Connect, CAP/VS, CC.EN and CSTS.RDY, Identify, Number of Queues, I/O queue Connects), keeps
/// the controller alive with Keep Alive every KATO/2, and shuts down with CC.SHN before closing.
/// NVMe errors surface as <see cref="NvmeException"/>, transport failures as <see cref="NvmeTransportException"/>.
/// </summary>
public sealed partial class NvmeTcpController : IAsyncDisposable
{
    public const string DiscoveryNqn = TargetOptions.DiscoveryNqn;

    // CC: EN, IOSQES = 6 (64-byte SQE), IOCQES = 4 (16-byte CQE); CSS, MPS (4 KiB), AMS all 0.
    private const uint CcEnable = 1, CcIoQueueEntrySizes = 6u << 16 | 4u << 20, CcShnNormal = 1u << 14, CcShnMask = 3u << 14;
    private const uint CstsReady = 1, CstsFatal = 2, CstsShstMask = 3u << 2, CstsShstComplete = 2u << 2;
    private const int MaxActiveNamespaceIds = IdentifyPages.PageSize / sizeof(uint);

    private readonly QueueConnection _admin;
    private readonly NvmeTcpControllerOptions _options;
    private readonly string _host;
    private readonly int _port;
    private readonly CancellationTokenSource _stop = new();
    private QueueConnection[] _io = [];
    private Task _keepAlive = Task.CompletedTask;
    private Task _asyncEvents = Task.CompletedTask;
    private int _nextQueue;
    private int _closed;

    private NvmeTcpController(QueueConnection admin, string host, int port, string subsystemNqn, string hostNqn,
        Guid hostId, NvmeTcpControllerOptions options)
    {
        _admin = admin;
        _host = host;
        _port = port;
        SubsystemNqn = subsystemNqn;
        HostNqn = hostNqn;
        HostId = hostId;
        _options = options;
    }

    public string SubsystemNqn { get; }
    public string HostNqn { get; }
    public Guid HostId { get; }
    public bool IsDiscovery => SubsystemNqn == DiscoveryNqn;

    /// <summary>The controller ID the admin Connect returned.</summary>
    public ushort Cntlid { get; private set; }

    /// <summary>CAP (8 bytes) and VS as Property Get read them.</summary>
    public ulong Capabilities { get; private set; }
    public uint Version { get; private set; }

    public ControllerInfo Identity { get; private set; } = null!;

    /// <summary>Active namespaces at connect time (empty for a discovery controller).</summary>
    public IReadOnlyList<NamespaceDetails> Namespaces { get; private set; } = [];

    public int IoQueueCount => _io.Length;

    /// <summary>Outstanding commands allowed per I/O queue.</summary>
    public int IoQueueDepth { get; private set; }

    /// <summary>Connects to <paramref name="subsystemNqn"/> (the discovery NQN gives a discovery controller without I/O queues).</summary>
    public static async Task<NvmeTcpController> ConnectAsync(string host, int port, string subsystemNqn, string hostNqn,
        NvmeTcpControllerOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(subsystemNqn);
        ArgumentNullException.ThrowIfNull(hostNqn);
        options ??= new NvmeTcpControllerOptions();
        var hostId = options.HostId == Guid.Empty ? Guid.NewGuid() : options.HostId;
        var admin = await QueueConnection.OpenAsync(host, port, AdminQueueOptions(options), cancellationToken).ConfigureAwait(false);
        var controller = new NvmeTcpController(admin, host, port, subsystemNqn, hostNqn, hostId, options);
        try
        {
            await controller.InitializeAsync(cancellationToken).ConfigureAwait(false);
            return controller;
        }
        catch
        {
            await controller.CloseQueuesAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Connects to the discovery controller at host:port, reads the whole discovery log (header first for NUMREC,
    /// then everything, retrying while GENCTR moves) and disconnects.
    /// </summary>
    public static async Task<DiscoveryLog> DiscoverAsync(string host, int port, string hostNqn,
        NvmeTcpControllerOptions? options = null, CancellationToken cancellationToken = default)
    {
        // KATO 0: a short-lived discovery connection; the target applies its own default timeout.
        var discoveryOptions = (options ?? new NvmeTcpControllerOptions()) with
        {
            IoQueues = 0, KeepAliveTimeoutMs = 0, AsyncEventHandler = null,
        };
        var controller = await ConnectAsync(host, port, DiscoveryNqn, hostNqn, discoveryOptions, cancellationToken).ConfigureAwait(false);
        await using (controller.ConfigureAwait(false))
        {
            var log = await controller.ReadDiscoveryLogAsync(cancellationToken).ConfigureAwait(false);
            await controller.DisconnectAsync().ConfigureAwait(false);
            return log;
        }
    }

    /// <summary>Shuts the controller down (CC.SHN = normal, wait for CSTS.SHST complete) and closes every queue.</summary>
    public async Task DisconnectAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        await _stop.CancelAsync().ConfigureAwait(false);
        await AwaitQuietly(_keepAlive).ConfigureAwait(false);
        try
        {
            // Bounded: a target that stops answering must not keep us from closing.
            if (!_admin.IsFailed) await ShutdownAsync().WaitAsync(_options.StateChangeTimeout).ConfigureAwait(false);
        }
        finally
        {
            await CloseQueuesAsync().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await DisconnectAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is NvmeException or NvmeTransportException or TimeoutException)
        {
            // Disposal must not throw; the queues are closed either way.
        }
    }

    private static HostQueueOptions AdminQueueOptions(NvmeTcpControllerOptions o) => new()
    {
        QueueId = 0,
        QueueDepth = o.AdminQueueDepth,
        HeaderDigest = o.HeaderDigest,
        DataDigest = o.DataDigest,
        InCapsuleDataLimit = o.AdminInCapsuleDataLimit,
        MaxR2T = o.MaxR2T,
    };

    private async Task InitializeAsync(CancellationToken ct)
    {
        Cntlid = await ConnectQueueAsync(_admin, 0, ConnectData.DynamicCntlid, (uint)_options.KeepAliveTimeoutMs, 0, ct).ConfigureAwait(false);
        Capabilities = await GetPropertyAsync(PropertyOffset.Cap, eightBytes: true, ct).ConfigureAwait(false);
        Version = (uint)await GetPropertyAsync(PropertyOffset.Vs, eightBytes: false, ct).ConfigureAwait(false);
        await SetPropertyAsync(PropertyOffset.Cc, CcEnable | CcIoQueueEntrySizes, eightBytes: false, ct).ConfigureAwait(false);
        await WaitForStatusAsync(CstsReady, CstsReady, ct).ConfigureAwait(false);
        Identity = ControllerInfo.Parse(await IdentifyAsync(IdentifyCns.Controller, 0, 0, ct).ConfigureAwait(false));
        if (Identity.Cntlid != Cntlid)
            throw new InvalidDataException($"Identify reports CNTLID {Identity.Cntlid} but Connect returned {Cntlid}");
        if (!IsDiscovery)
        {
            Namespaces = await ReadNamespacesAsync(ct).ConfigureAwait(false);
            await CreateIoQueuesAsync(ct).ConfigureAwait(false);
        }
        if (_options.AsyncEventHandler is { } handler) await StartAsyncEventsAsync(handler, ct).ConfigureAwait(false);
        if (_options.KeepAliveTimeoutMs > 0) _keepAlive = KeepAliveLoopAsync(Math.Max(1, _options.KeepAliveTimeoutMs / 2));
    }

    /// <summary>Fabrics Connect on one queue; returns the CNTLID from DW0 or throws <see cref="NvmeConnectException"/>.</summary>
    private async Task<ushort> ConnectQueueAsync(QueueConnection queue, ushort qid, ushort cntlid, uint katoMs, byte cattr, CancellationToken ct)
    {
        var data = ConnectData.Create(HostId, cntlid, SubsystemNqn, HostNqn);
        var command = NvmeCommands.Connect(qid, (ushort)(queue.QueueDepth - 1), cattr, katoMs);
        var cqe = await queue.ExecuteAsync(command, data, ct).ConfigureAwait(false);
        if (!cqe.Status.IsSuccess)
            throw new NvmeConnectException(cqe.Status, cqe.Result, $"Connect of queue {qid} to {SubsystemNqn} refused");
        return (ushort)cqe.Result;
    }

    /// <summary>Polls CSTS until (CSTS &amp; mask) == value; CSTS.CFS or the timeout (CAP.TO, capped) fails.</summary>
    private async Task WaitForStatusAsync(uint mask, uint value, CancellationToken ct)
    {
        var capTimeout = TimeSpan.FromMilliseconds(Math.Max(1, (Capabilities >> 24) & 0xFF) * 500);
        var timeout = capTimeout < _options.StateChangeTimeout ? capTimeout : _options.StateChangeTimeout;
        var clock = Stopwatch.StartNew();
        while (true)
        {
            uint csts = (uint)await GetPropertyAsync(PropertyOffset.Csts, eightBytes: false, ct).ConfigureAwait(false);
            if ((csts & CstsFatal) != 0) throw new IOException($"controller {Cntlid} reports CSTS.CFS (CSTS {csts:X8}h)");
            if ((csts & mask) == value) return;
            if (clock.Elapsed > timeout) throw new TimeoutException($"CSTS {csts:X8}h did not reach {value:X}h under mask {mask:X}h");
            await Task.Delay(5, ct).ConfigureAwait(false);
        }
    }

    private async Task<IReadOnlyList<NamespaceDetails>> ReadNamespacesAsync(CancellationToken ct)
    {
        var list = await IdentifyAsync(IdentifyCns.ActiveNamespaceList, 0, 0, ct).ConfigureAwait(false);
        var namespaces = new List<NamespaceDetails>();
        for (int i = 0; i < MaxActiveNamespaceIds; i++)
        {
            uint nsid = BinaryPrimitives.ReadUInt32LittleEndian(list.AsSpan(i * 4));
            if (nsid == 0) break;
            var details = await IdentifyActiveAsync(nsid, ct).ConfigureAwait(false);
            if (details is not null) namespaces.Add(details);
        }
        return namespaces;
    }

    /// <summary>
    /// One namespace of the active list, or null when it was deleted after the list was read: CNS 00h then answers
    /// zeros (an inactive NSID) and CNS 03h Invalid Namespace or Format. Namespaces come and go while hosts connect.
    /// </summary>
    private async Task<NamespaceDetails?> IdentifyActiveAsync(uint nsid, CancellationToken ct)
    {
        var ns = await IdentifyAsync(IdentifyCns.Namespace, nsid, 0, ct).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt64LittleEndian(ns) == 0) return null; // NSZE 0: inactive
        try
        {
            var descriptors = await IdentifyAsync(IdentifyCns.NamespaceDescriptorList, nsid, 0, ct).ConfigureAwait(false);
            return NamespaceDetails.Parse(nsid, ns, descriptors);
        }
        catch (NvmeException e) when (e.Status.Sct == StatusCodeType.Generic && e.Status.Sc == NvmeStatus.InvalidNamespaceOrFormat.Sc)
        {
            return null;
        }
    }

    /// <summary>Number of Queues, then one connection per granted queue, each Connected with our CNTLID.</summary>
    private async Task CreateIoQueuesAsync(CancellationToken ct)
    {
        int wanted = _options.IoQueues;
        if (wanted <= 0) return;
        uint requested = (uint)(wanted - 1) | (uint)(wanted - 1) << 16;
        uint granted = await SetFeaturesAsync(FeatureId.NumberOfQueues, requested, ct).ConfigureAwait(false);
        int count = Math.Min(wanted, (int)Math.Min(granted & 0xFFFF, granted >> 16) + 1);
        // SQSIZE (0's based) = depth - 1 must not exceed CAP.MQES.
        int mqes = (int)(Capabilities & 0xFFFF);
        IoQueueDepth = Math.Clamp(_options.QueueDepth, 2, Math.Min(mqes + 1, HostQueueOptions.MaxQueueDepth));
        int inCapsule = _options.IoInCapsuleDataLimit ?? HostQueueOptions.InCapsuleLimitFromIoccsz(Identity.IoCommandCapsuleSize16);
        byte cattr = _options.DisableSqFlowControl ? (byte)0x4 : (byte)0;
        var queues = new List<QueueConnection>(count);
        try
        {
            for (ushort qid = 1; qid <= count; qid++)
            {
                var options = IoQueueOptions(qid, inCapsule);
                var queue = await QueueConnection.OpenAsync(_host, _port, options, ct).ConfigureAwait(false);
                queues.Add(queue);
                await ConnectQueueAsync(queue, qid, Cntlid, 0, cattr, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            _io = [.. queues];
        }
    }

    private HostQueueOptions IoQueueOptions(ushort qid, int inCapsule) => new()
    {
        QueueId = qid,
        QueueDepth = IoQueueDepth,
        HeaderDigest = _options.HeaderDigest,
        DataDigest = _options.DataDigest,
        InCapsuleDataLimit = inCapsule,
        MaxR2T = _options.MaxR2T,
    };

    private async Task StartAsyncEventsAsync(Action<uint> handler, CancellationToken ct)
    {
        // An I/O controller: the namespace attribute and ANA change notices, as far as the controller has them (OAES).
        uint notices = IsDiscovery ? 1u << 31 : Identity.Oaes & ((1u << 8) | (1u << 11));
        await SetFeaturesAsync(FeatureId.AsyncEventConfiguration, notices, ct).ConfigureAwait(false);
        _asyncEvents = AsyncEventLoopAsync(handler);
    }

    /// <summary>Keeps one AER outstanding; ends when the admin queue closes.</summary>
    private async Task AsyncEventLoopAsync(Action<uint> handler)
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var cqe = await _admin.ExecuteAsync(NvmeCommands.AsyncEventRequest(), default, CancellationToken.None).ConfigureAwait(false);
                if (!cqe.Status.IsSuccess) return;
                handler((uint)cqe.Result);
            }
        }
        catch (NvmeTransportException)
        {
            // The admin queue closed.
        }
    }

    private async Task KeepAliveLoopAsync(int periodMs)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(periodMs));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
                await KeepAliveAsync(_stop.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or NvmeTransportException or NvmeException)
        {
            // Stopped, or the controller is gone: callers see that on their own commands.
        }
    }

    private async Task ShutdownAsync()
    {
        uint cc = (uint)await GetPropertyAsync(PropertyOffset.Cc, eightBytes: false, CancellationToken.None).ConfigureAwait(false);
        await SetPropertyAsync(PropertyOffset.Cc, (cc & ~CcShnMask) | CcShnNormal, eightBytes: false, CancellationToken.None).ConfigureAwait(false);
        await WaitForStatusAsync(CstsShstMask, CstsShstComplete, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>I/O queues first, then the admin queue (closing it destroys the controller on the target).</summary>
    private async Task CloseQueuesAsync()
    {
        foreach (var q in _io) await q.DisposeAsync().ConfigureAwait(false);
        await _admin.DisposeAsync().ConfigureAwait(false);
        await AwaitQuietly(_asyncEvents).ConfigureAwait(false);
    }

    private static async Task AwaitQuietly(Task task)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or NvmeTransportException or NvmeException)
        {
            // Background loops end this way on close.
        }
    }
}
