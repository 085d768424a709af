using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>Property Get/Set (CAP, VS, CC, CSTS) and the Identify data a Linux host checks.</summary>
public class PropertyAndIdentifyTests
{
    private const uint CcShnNormal = 1u << 14;

    [Fact]
    public void CAP_is_eight_bytes_with_MQES_CQR_TO_and_CSS()
    {
        var fabric = new Fabric();
        var (admin, _) = fabric.Connect();
        ulong cap = fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Cap, eightBytes: true)).Result;
        Assert.Equal(1023UL, cap & 0xFFFF); // MQES = MaxQueueEntries - 1
        Assert.Equal(1UL, (cap >> 16) & 1); // CQR
        Assert.Equal(15UL, (cap >> 24) & 0xFF); // TO: 7.5 s
        Assert.Equal(1UL, (cap >> 37) & 0xFF); // CSS: NVM command set
        Assert.Equal(0UL, (cap >> 48) & 0xF); // MPSMIN: 4 KiB
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(admin, NvmeCommands.PropertyGet(PropertyOffset.Cap, eightBytes: false)).Status);
    }

    [Fact]
    public void VS_is_1_3_and_properties_beyond_the_property_space_are_invalid()
    {
        var fabric = new Fabric();
        var (admin, _) = fabric.Connect();
        Assert.Equal(0x0001_0300UL, fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Vs, false)).Result);
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(admin, NvmeCommands.PropertyGet(0x1040, false)).Status);
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(admin, NvmeCommands.PropertySet(PropertyOffset.Csts, 1)).Status);
    }

    [Fact]
    public void CC_EN_sets_CSTS_RDY_and_SHN_completes_shutdown()
    {
        var fabric = new Fabric();
        var (admin, _) = fabric.Connect();
        Assert.Equal(0UL, fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Csts, false)).Result);

        fabric.ExecOk(admin, NvmeCommands.PropertySet(PropertyOffset.Cc, Fabric.CcEnable));
        Assert.Equal((ulong)Fabric.CcEnable, fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Cc, false)).Result);
        Assert.Equal(1UL, fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Csts, false)).Result);

        fabric.ExecOk(admin, NvmeCommands.PropertySet(PropertyOffset.Cc, Fabric.CcEnable | CcShnNormal));
        ulong csts = fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Csts, false)).Result;
        Assert.Equal(2UL, (csts >> 2) & 3); // SHST: shutdown complete

        fabric.ExecOk(admin, NvmeCommands.PropertySet(PropertyOffset.Cc, 0));
        Assert.Equal(0UL, fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Csts, false)).Result);
    }

    [Fact]
    public void Bad_CC_entry_sizes_set_CFS_and_admin_commands_wait_for_RDY()
    {
        var fabric = new Fabric();
        var (admin, _) = fabric.Connect();
        Assert.Equal(NvmeStatus.CommandSequenceError, fabric.Exec(admin, NvmeCommands.Identify(IdentifyCns.Controller)).Status);
        fabric.ExecOk(admin, NvmeCommands.PropertySet(PropertyOffset.Cc, 1 | 7u << 16 | 4u << 20));
        Assert.Equal(2UL, fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Csts, false)).Result); // CFS, not RDY
        Assert.Equal(NvmeStatus.CommandSequenceError, fabric.Exec(admin, NvmeCommands.Identify(IdentifyCns.Controller)).Status);
    }

    [Fact]
    public void Property_commands_on_an_io_queue_are_invalid()
    {
        var fabric = new Fabric();
        var (_, io) = fabric.Controller();
        Assert.Equal(NvmeStatus.InvalidOpcode, fabric.Exec(io, NvmeCommands.PropertyGet(PropertyOffset.Vs, false)).Status);
    }

    [Fact]
    public void Identify_controller_has_what_the_Linux_host_checks()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        var info = IdentifyController(fabric, admin);
        ulong vs = fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Vs, false)).Result;

        Assert.Equal(admin.Cntlid, info.Cntlid);
        Assert.True(info.KeepAliveSupport > 0);
        Assert.Equal(0, info.InCapsuleDataOffset);
        Assert.Equal(IdentifyPages.TcpSgls, info.Sgls);
        Assert.NotEqual(0u, info.Sgls & 3); // SGLs supported: Linux refuses a fabrics controller without
        Assert.Equal((64u + 8192) / 16, info.IoCommandCapsuleSize16);
        Assert.Equal(1u, info.IoResponseCapsuleSize16);
        Assert.Equal(fabric.SubNqn, info.SubsystemNqn);
        Assert.Equal((uint)vs, info.Version);
        Assert.Equal(ControllerType.Io, info.ControllerType);
        Assert.Equal(8, info.Mdts);
        Assert.Equal(1u << 20, (uint)info.MaxTransferBytes);
        Assert.Equal(Target.MaxNamespaces, info.NamespaceCount);
        Assert.Equal(1, info.MaxSglDataBlockDescriptors);
        Assert.True(info.MaxCommands >= 32);
        Assert.Equal((1u << 8) | (1u << 11), info.Oaes); // namespace attribute and ANA change notices
        Assert.Equal(8192, HostQueueOptions.InCapsuleLimitFromIoccsz(info.IoCommandCapsuleSize16));
    }

    [Fact]
    public void Identify_controller_of_aux_and_discovery_subsystems()
    {
        var fabric = new Fabric();
        var aux = fabric.Admin(fabric.SubNqn + ".aux-2");
        var auxInfo = IdentifyController(fabric, aux);
        Assert.Equal(fabric.SubNqn + ".aux-2", auxInfo.SubsystemNqn);
        Assert.Equal(aux.Cntlid, auxInfo.Cntlid);

        var disc = fabric.Admin(TargetOptions.DiscoveryNqn);
        var discInfo = IdentifyController(fabric, disc);
        Assert.Equal(ControllerType.Discovery, discInfo.ControllerType);
        Assert.Equal(TargetOptions.DiscoveryNqn, discInfo.SubsystemNqn);
        Assert.Equal(0u, discInfo.NamespaceCount);
        Assert.Equal(1u << 31, discInfo.Oaes);
        Assert.Equal(disc.Cntlid, discInfo.Cntlid);
        // A discovery controller answers no other CNS.
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(disc, NvmeCommands.Identify(IdentifyCns.ActiveNamespaceList), new byte[4096]).Status);
    }

    [Fact]
    public void Identify_namespace_NGUID_is_the_volume_uuid()
    {
        var fabric = new Fabric();
        var volume = Guid.Parse("00112233-4455-6677-8899-aabbccddeeff");
        fabric.AddVolume(3, 1000, 4096, volume);
        var admin = fabric.Admin();
        var ns = new byte[4096];
        fabric.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.Namespace, 3), ns);
        var descs = new byte[4096];
        fabric.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.NamespaceDescriptorList, 3), descs);

        var details = NamespaceDetails.Parse(3, ns, descs);
        Assert.Equal(volume, details.Nguid);
        Assert.Equal(volume, details.Uuid);
        Assert.Equal(1000UL, details.BlockCount);
        Assert.Equal(1000UL, details.Capacity);
        Assert.Equal(4096, details.BlockSize);
        Assert.Equal([0x00, 0x11, 0x22, 0x33], ns.AsSpan(104, 4).ToArray());
        Assert.Equal(volume, new Guid(NamespaceDetails.FindDescriptor(descs, IdentifyPages.NidtNguid), bigEndian: true));
        Assert.Equal([IdentifyPages.CsiNvm], NamespaceDetails.FindDescriptor(descs, IdentifyPages.NidtCsi).ToArray());
    }

    [Fact]
    public void Active_namespace_list_and_inactive_or_invalid_nsids()
    {
        var fabric = new Fabric();
        fabric.AddVolume(2);
        fabric.AddVolume(5);
        var admin = fabric.Admin();
        var list = new byte[4096];
        fabric.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.ActiveNamespaceList, 0), list);
        Assert.Equal(2u, BitConverter.ToUInt32(list, 0));
        Assert.Equal(5u, BitConverter.ToUInt32(list, 4));
        Assert.Equal(0u, BitConverter.ToUInt32(list, 8));
        fabric.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.ActiveNamespaceList, 2), list);
        Assert.Equal(5u, BitConverter.ToUInt32(list, 0));

        var page = new byte[4096];
        page.AsSpan().Fill(0xEE);
        fabric.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.Namespace, 3), page); // inactive: zero page
        Assert.True(page.AsSpan().IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, fabric.Exec(admin, NvmeCommands.Identify(IdentifyCns.Namespace, 0), page).Status);
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, fabric.Exec(admin, NvmeCommands.Identify(IdentifyCns.NamespaceDescriptorList, 3), page).Status);
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(admin, NvmeCommands.Identify(0x55), page).Status);
    }

    internal static ControllerInfo IdentifyController(Fabric fabric, QueuePair admin)
    {
        var page = new byte[4096];
        fabric.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.Controller), page);
        return ControllerInfo.Parse(page);
    }
}
