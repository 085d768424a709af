using System.Buffers.Binary;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>Get Log Page, Set/Get Features, Keep Alive, Abort and Asynchronous Event Requests.</summary>
public class AdminTests
{
    private const uint NoticeNamespace = 1u << 8, NoticeDiscovery = 1u << 31;

    [Fact]
    public void Smart_log_and_windowed_reads()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        var smart = GetLog(fabric, admin, LogPageId.SmartHealth, 512);
        Assert.Equal(308, BinaryPrimitives.ReadUInt16LittleEndian(smart.AsSpan(1))); // composite temperature, K
        Assert.Equal(100, smart[3]); // available spare
        Assert.Equal(10, smart[4]); // threshold

        var window = new byte[8];
        fabric.ExecOk(admin, NvmeCommands.GetLogPage(LogPageId.SmartHealth, 8, offset: 0), window);
        Assert.Equal(smart.AsSpan(0, 8).ToArray(), window);
        fabric.ExecOk(admin, NvmeCommands.GetLogPage(LogPageId.SmartHealth, 8, offset: 508), window);
        Assert.Equal(new byte[8], window); // past the end reads as zeroes
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(admin, NvmeCommands.GetLogPage(LogPageId.SmartHealth, 8, offset: 2), window).Status);
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(admin, NvmeCommands.GetLogPage(LogPageId.SmartHealth, 8, offset: 1024), window).Status);
    }

    [Fact]
    public void Error_firmware_and_effects_logs()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        Assert.True(GetLog(fabric, admin, LogPageId.ErrorInformation, 64).AsSpan().IndexOfAnyExcept((byte)0) < 0);
        var fw = GetLog(fabric, admin, LogPageId.FirmwareSlot, 512);
        Assert.Equal(1, fw[0]);
        Assert.Equal("0.1.0   ", System.Text.Encoding.ASCII.GetString(fw, 8, 8));

        var effects = GetLog(fabric, admin, LogPageId.CommandsSupportedAndEffects, 4096);
        Assert.Equal(LogPages.EffectsCsupp, BinaryPrimitives.ReadUInt32LittleEndian(effects.AsSpan(AdminOpcode.Identify * 4)));
        Assert.Equal(LogPages.EffectsCsupp | LogPages.EffectsLbcc, BinaryPrimitives.ReadUInt32LittleEndian(effects.AsSpan(1024 + IoOpcode.Write * 4)));
        Assert.Equal(LogPages.EffectsCsupp, BinaryPrimitives.ReadUInt32LittleEndian(effects.AsSpan(1024 + IoOpcode.Read * 4)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(effects.AsSpan(1024 + 0x7C * 4)));
    }

    [Fact]
    public void Unsupported_log_pages_are_InvalidLogPage()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        var page = new byte[1024];
        Assert.Equal(NvmeStatus.InvalidLogPage, fabric.Exec(admin, NvmeCommands.GetLogPage(LogPageId.Discovery, 1024), page).Status);
        Assert.Equal(NvmeStatus.InvalidLogPage, fabric.Exec(admin, NvmeCommands.GetLogPage(0xC0, 1024), page).Status);
        var disc = fabric.Admin(TargetOptions.DiscoveryNqn);
        Assert.Equal(NvmeStatus.InvalidLogPage, fabric.Exec(disc, NvmeCommands.GetLogPage(LogPageId.SmartHealth, 512), new byte[512]).Status);
    }

    [Fact]
    public void Discovery_controller_serves_the_effects_log_its_LPA_claims()
    {
        var fabric = new Fabric();
        var disc = fabric.Admin(TargetOptions.DiscoveryNqn);
        var effects = GetLog(fabric, disc, LogPageId.CommandsSupportedAndEffects, 4096);
        Assert.Equal(LogPages.EffectsCsupp, BinaryPrimitives.ReadUInt32LittleEndian(effects.AsSpan(AdminOpcode.GetLogPage * 4)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(effects.AsSpan(1024 + IoOpcode.Write * 4)));
    }

    [Fact]
    public void Changed_namespace_list_is_cleared_by_reading_without_RAE()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        fabric.AddVolume(3);
        fabric.AddVolume(9);
        var retained = new byte[4096];
        fabric.ExecOk(admin, NvmeCommands.GetLogPage(LogPageId.ChangedNamespaceList, 4096, retainAsyncEvent: true), retained);
        Assert.Equal([3u, 9u, 0u], Nsids(retained, 3));
        var cleared = GetLog(fabric, admin, LogPageId.ChangedNamespaceList, 4096);
        Assert.Equal([3u, 9u, 0u], Nsids(cleared, 3));
        Assert.Equal(0u, Nsids(GetLog(fabric, admin, LogPageId.ChangedNamespaceList, 4096), 1)[0]);
    }

    [Fact]
    public void Discovery_log_lists_the_default_subsystem_per_listener_and_referrals_but_not_aux_subsystems()
    {
        var fabric = new Fabric();
        fabric.AddVolume(); // the subsystem is listed to hosts that see a namespace in it
        fabric.Target.AddListener(new ListenerInfo("192.168.7.10", "4420", 1, IsDiscovery: false));
        fabric.Target.AddListener(new ListenerInfo("192.168.7.10", "8009", 2, IsDiscovery: true));
        var disc = fabric.Admin(TargetOptions.DiscoveryNqn);

        var log = ReadDiscoveryLog(fabric, disc);
        // Aux subsystems are reachable, not advertised: a host that connects every entry must connect once.
        Assert.Equal(1UL, log.RecordCount);
        Assert.Equal([fabric.SubNqn], log.Entries.Select(e => e.SubNqn));
        Assert.All(log.Entries, e =>
        {
            Assert.Equal(DiscoverySubtype.Nvm, e.Subtype);
            Assert.Equal("192.168.7.10", e.TrAddr);
            Assert.Equal("4420", e.TrSvcId);
            Assert.Equal(1, e.PortId);
            Assert.Equal(NvmfAddressFamily.Ipv4, e.AdrFam);
        });
        ulong genctr = log.GenerationCounter;

        fabric.Target.AddReferral(new Referral("fd00::5", "8009", 3));
        var withReferral = ReadDiscoveryLog(fabric, disc);
        Assert.True(withReferral.GenerationCounter > genctr);
        var referral = withReferral.Entries[^1];
        Assert.Equal(DiscoverySubtype.Referral, referral.Subtype);
        Assert.Equal(TargetOptions.DiscoveryNqn, referral.SubNqn);
        Assert.Equal("fd00::5", referral.TrAddr);
        Assert.Equal(NvmfAddressFamily.Ipv6, referral.AdrFam);
        Assert.Equal(3, referral.PortId);

        fabric.Target.SetHostAccess(fabric.Target.Subsystems[0], HostAccess.Only(["nqn.2014-08.org.nvmexpress:uuid:someone-else"]));
        var filtered = ReadDiscoveryLog(fabric, disc);
        Assert.DoesNotContain(filtered.Entries, e => e.SubNqn == fabric.SubNqn);
        Assert.Equal(DiscoverySubtype.Referral, Assert.Single(filtered.Entries).Subtype);
    }

    [Fact]
    public void Number_of_queues_feature()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        Assert.Equal(3UL | 3UL << 16, fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.NumberOfQueues, 3 | 3u << 16)).Result);
        Assert.Equal(3UL | 3UL << 16, fabric.ExecOk(admin, NvmeCommands.GetFeatures(FeatureId.NumberOfQueues)).Result);
        Assert.Equal(31UL | 31UL << 16, fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.NumberOfQueues, 100 | 100u << 16)).Result);
        Assert.Equal(31UL | 31UL << 16, fabric.ExecOk(admin, NvmeCommands.GetFeatures(FeatureId.NumberOfQueues, select: 1)).Result);
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(admin, NvmeCommands.SetFeatures(FeatureId.NumberOfQueues, 0xFFFF)).Status);
    }

    [Fact]
    public void Async_event_configuration_and_keep_alive_timer_features()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin(katoMs: 1500);
        Assert.Equal(1500UL, fabric.ExecOk(admin, NvmeCommands.GetFeatures(FeatureId.KeepAliveTimer)).Result);
        fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.KeepAliveTimer, 4000));
        Assert.Equal(4000UL, fabric.ExecOk(admin, NvmeCommands.GetFeatures(FeatureId.KeepAliveTimer)).Result);
        fabric.Now += 3000; // past the old KATO, within the new one
        fabric.Pump();
        Assert.False(admin.Closed);

        Assert.Equal(0UL, fabric.ExecOk(admin, NvmeCommands.GetFeatures(FeatureId.AsyncEventConfiguration)).Result);
        fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, NoticeNamespace | NoticeDiscovery | 0xFF));
        Assert.Equal((ulong)NoticeNamespace, fabric.ExecOk(admin, NvmeCommands.GetFeatures(FeatureId.AsyncEventConfiguration)).Result);
        Assert.Equal(1UL << 2, fabric.ExecOk(admin, NvmeCommands.GetFeatures(FeatureId.AsyncEventConfiguration, select: 3)).Result);
        Assert.Equal(NvmeStatus.FeatureIdNotSaveable, fabric.Exec(admin, new NvmeCommand(AdminOpcode.SetFeatures, 0, FeatureId.AsyncEventConfiguration | 1u << 31)).Status);
    }

    [Fact]
    public void Disabling_the_write_cache_makes_writes_FUA_and_host_identifier_is_the_connect_hostid()
    {
        var fabric = new Fabric();
        var (admin, io) = fabric.Controller();
        fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.VolatileWriteCache, 0));
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 1), new byte[512]);
        Assert.True(fabric.Storage.Log[^1].Fua);

        var hostId = new byte[16];
        fabric.ExecOk(admin, NvmeCommands.GetFeatures(FeatureId.HostIdentifier, cdw11: 1), hostId);
        Assert.Equal(HostIds.Default, new Guid(hostId, bigEndian: true));
        // On fabrics the host identifier is the Connect data's: setting it is a command sequence error.
        Assert.Equal(NvmeStatus.CommandSequenceError, fabric.Exec(admin, NvmeCommands.SetFeatures(FeatureId.HostIdentifier, 0)).Status);
    }

    [Fact]
    public void Discovery_controller_accepts_only_its_features()
    {
        var fabric = new Fabric();
        var disc = fabric.Admin(TargetOptions.DiscoveryNqn);
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(disc, NvmeCommands.SetFeatures(FeatureId.NumberOfQueues, 0)).Status);
        fabric.ExecOk(disc, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, NoticeNamespace | NoticeDiscovery));
        Assert.Equal((ulong)NoticeDiscovery, fabric.ExecOk(disc, NvmeCommands.GetFeatures(FeatureId.AsyncEventConfiguration)).Result);
        // KATO 0 at connect means the target's default for discovery.
        Assert.Equal((ulong)fabric.Target.Options.DiscoveryDefaultKatoMs, fabric.ExecOk(disc, NvmeCommands.GetFeatures(FeatureId.KeepAliveTimer)).Result);
    }

    [Fact]
    public void Keep_alive_and_abort()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        fabric.ExecOk(admin, NvmeCommands.KeepAlive());
        Assert.Equal(1UL, fabric.ExecOk(admin, new NvmeCommand(AdminOpcode.Abort, 0, 5)).Result & 1);
    }

    [Fact]
    public void Aer_completes_on_AddNamespace_and_is_rearmed_by_reading_the_log()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, NoticeNamespace));
        var aer = admin.Submit(NvmeCommands.AsyncEventRequest());
        fabric.Pump();
        Assert.Empty(admin.TakeCompletions());
        Assert.Equal(0, admin.Target.OutstandingCommands); // parked AERs are not back-pressure

        int wakes = admin.Signal.Wakes;
        fabric.AddVolume(2);
        Assert.True(admin.Signal.Wakes > wakes);
        fabric.Pump();
        var done = Assert.Single(admin.TakeCompletions());
        Assert.Same(aer, done);
        Assert.True(done.Status.IsSuccess);
        Assert.Equal(0x0004_0002UL, done.Completion.Result); // notice, namespace attribute changed, log 04h
        admin.Host.Release(done);

        // Until the host reads log 04h the notice is masked: a second change does not complete the next AER.
        admin.Submit(NvmeCommands.AsyncEventRequest());
        fabric.AddVolume(3);
        fabric.Pump();
        Assert.Empty(admin.TakeCompletions());
        Assert.Equal([2u, 3u], Nsids(GetLog(fabric, admin, LogPageId.ChangedNamespaceList, 4096), 2));

        fabric.AddVolume(4);
        fabric.Pump();
        Assert.Equal(0x0004_0002UL, Assert.Single(admin.TakeCompletions()).Completion.Result);
    }

    [Fact]
    public void Events_for_a_host_without_an_AER_are_coalesced_not_queued_without_bound()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, NoticeNamespace));
        for (uint nsid = 2; nsid < 200; nsid++) fabric.AddVolume(nsid);
        Assert.Equal(1, admin.Target.Controller!.PendingEvents);
        admin.Submit(NvmeCommands.AsyncEventRequest());
        admin.Submit(NvmeCommands.AsyncEventRequest());
        fabric.Pump();
        // One notice for 198 changes: the second AER stays parked, and the log lists every changed NSID.
        Assert.Equal(0x0004_0002UL, Assert.Single(admin.TakeCompletions()).Completion.Result);
        Assert.Equal(198, Nsids(GetLog(fabric, admin, LogPageId.ChangedNamespaceList, 4096), 199).Count(n => n != 0));
    }

    [Fact]
    public void Aer_stays_parked_when_the_notice_is_disabled_and_the_limit_is_four()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        for (int i = 0; i < 4; i++) admin.Submit(NvmeCommands.AsyncEventRequest());
        fabric.AddVolume(2);
        fabric.Pump();
        Assert.Empty(admin.TakeCompletions());
        Assert.Equal(NvmeStatus.AsyncEventRequestLimitExceeded, fabric.Exec(admin, NvmeCommands.AsyncEventRequest()).Status);
    }

    [Fact]
    public void Discovery_controller_aer_completes_on_AddReferral()
    {
        var fabric = new Fabric();
        var disc = fabric.Admin(TargetOptions.DiscoveryNqn);
        fabric.ExecOk(disc, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, NoticeDiscovery));
        disc.Submit(NvmeCommands.AsyncEventRequest());
        fabric.Pump();
        Assert.Empty(disc.TakeCompletions());

        fabric.Target.AddReferral(new Referral("10.0.0.9", "8009"));
        fabric.Pump();
        var done = Assert.Single(disc.TakeCompletions());
        Assert.Equal(0x0070_F002UL, done.Completion.Result); // notice, discovery log change, log 70h
        disc.Host.Release(done);

        // An I/O controller is not told about discovery changes.
        var admin = fabric.Admin();
        fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, NoticeNamespace));
        admin.Submit(NvmeCommands.AsyncEventRequest());
        fabric.Target.AddReferral(new Referral("10.0.0.10", "8009"));
        fabric.Pump();
        Assert.Empty(admin.TakeCompletions());
    }

    private static byte[] GetLog(Fabric fabric, QueuePair admin, byte lid, int length)
    {
        var page = new byte[length];
        fabric.ExecOk(admin, NvmeCommands.GetLogPage(lid, length), page);
        return page;
    }

    /// <summary>Reads the discovery log as a host does: the header for NUMREC, then the whole log.</summary>
    internal static DiscoveryLog ReadDiscoveryLog(Fabric fabric, QueuePair disc)
    {
        var header = GetLog(fabric, disc, LogPageId.Discovery, DiscoveryLog.HeaderSize);
        ulong numrec = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8));
        var full = GetLog(fabric, disc, LogPageId.Discovery, DiscoveryLog.HeaderSize + (int)numrec * DiscoveryLog.EntrySize);
        var log = DiscoveryLog.Parse(full);
        Assert.Equal(BinaryPrimitives.ReadUInt64LittleEndian(header), log.GenerationCounter);
        Assert.Equal((int)numrec, log.Entries.Count);
        return log;
    }

    private static uint[] Nsids(byte[] page, int count)
    {
        var ids = new uint[count];
        for (int i = 0; i < count; i++) ids[i] = BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(i * 4));
        return ids;
    }
}
