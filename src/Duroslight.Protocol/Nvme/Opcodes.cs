namespace Duroslight.Protocol.Nvme;

/// <summary>Which way a command moves data (NVMe opcode bits 1:0; for Fabrics commands FCTYPE bits 1:0).</summary>
public enum DataDirection : byte
{
    None = 0,
    HostToController = 1,
    ControllerToHost = 2,
    Bidirectional = 3,
}

public static class DataDirections
{
    public static DataDirection Of(byte opcode, byte fabricsCommandType) =>
        (DataDirection)((opcode == AdminOpcode.Fabrics ? fabricsCommandType : opcode) & 0x3);
}

/// <summary>Admin command set opcodes (NVMe base spec, figure "Opcodes for Admin Commands").</summary>
public static class AdminOpcode
{
    public const byte DeleteIoSq = 0x00;
    public const byte CreateIoSq = 0x01;
    public const byte GetLogPage = 0x02;
    public const byte DeleteIoCq = 0x04;
    public const byte CreateIoCq = 0x05;
    public const byte Identify = 0x06;
    public const byte Abort = 0x08;
    public const byte SetFeatures = 0x09;
    public const byte GetFeatures = 0x0A;
    public const byte AsyncEventRequest = 0x0C;
    public const byte KeepAlive = 0x18;
    public const byte Fabrics = 0x7F;
}

/// <summary>NVM command set I/O opcodes.</summary>
public static class IoOpcode
{
    public const byte Flush = 0x00;
    public const byte Write = 0x01;
    public const byte Read = 0x02;
    public const byte WriteZeroes = 0x08;
    public const byte DatasetManagement = 0x09;
    public const byte ReservationRegister = 0x0D;
    public const byte ReservationReport = 0x0E;
    public const byte ReservationAcquire = 0x11;
    public const byte ReservationRelease = 0x15;
    public const byte Fabrics = 0x7F;
}

/// <summary>Fabrics command types (NVMe-oF spec, FCTYPE at SQE byte 4).</summary>
public static class FabricsType
{
    public const byte PropertySet = 0x00;
    public const byte Connect = 0x01;
    public const byte PropertyGet = 0x04;
    public const byte AuthenticationSend = 0x05;
    public const byte AuthenticationReceive = 0x06;
    public const byte Disconnect = 0x08;
}

/// <summary>Identify CNS values the target answers.</summary>
public static class IdentifyCns
{
    public const byte Namespace = 0x00;
    public const byte Controller = 0x01;
    public const byte ActiveNamespaceList = 0x02;
    public const byte NamespaceDescriptorList = 0x03;
    public const byte IoCommandSetNamespace = 0x05;
    public const byte IoCommandSetController = 0x06;
    public const byte IoCommandSetActiveNamespaceList = 0x07;
}

/// <summary>Log page identifiers.</summary>
public static class LogPageId
{
    public const byte ErrorInformation = 0x01;
    public const byte SmartHealth = 0x02;
    public const byte FirmwareSlot = 0x03;
    public const byte ChangedNamespaceList = 0x04;
    public const byte CommandsSupportedAndEffects = 0x05;
    public const byte AsymmetricNamespaceAccess = 0x0C;
    public const byte Discovery = 0x70;
}

/// <summary>Feature identifiers.</summary>
public static class FeatureId
{
    public const byte Arbitration = 0x01;
    public const byte PowerManagement = 0x02;
    public const byte TemperatureThreshold = 0x04;
    public const byte ErrorRecovery = 0x05;
    public const byte VolatileWriteCache = 0x06;
    public const byte NumberOfQueues = 0x07;
    public const byte InterruptCoalescing = 0x08;
    public const byte InterruptVectorConfiguration = 0x09;
    public const byte WriteAtomicityNormal = 0x0A;
    public const byte AsyncEventConfiguration = 0x0B;
    public const byte KeepAliveTimer = 0x0F;
    public const byte HostIdentifier = 0x81;
}

/// <summary>Controller property offsets (NVMe-oF Property Get/Set).</summary>
public static class PropertyOffset
{
    public const uint Cap = 0x00;
    public const uint Vs = 0x08;
    public const uint Cc = 0x14;
    public const uint Csts = 0x1C;
    public const uint Nssr = 0x20;
}
