namespace Duroslight.Protocol.Subsystems;

/// <summary>
/// Controller IDs (CNTLID) of one subsystem on one node. Every node of the cluster owns a disjoint range
/// inside 1..0xFFEF (0xFFF0..0xFFFF are reserved: 0xFFFF asks for a dynamic ID, 0xFFFE for any static one),
/// so IDs never collide across nodes without coordination: node i owns [1 + i*capacity, (i+1)*capacity].
/// IDs are recycled round-robin: a host may still hold a just-freed ID in stale state, so it is the last to be reused.
/// Thread-safe; connect and disconnect are control path, so one lock is enough.
/// </summary>
public sealed class ControllerIdPool
{
    public const int DefaultCapacity = 2030;

    /// <summary>The highest assignable controller ID.</summary>
    public const ushort MaxControllerId = 0xFFEF;

    private readonly object _gate = new();
    private readonly bool[] _inUse;
    private int _nextIndex;
    private int _inUseCount;

    /// <param name="nodeIndex">This node's index in the cluster: 0..<see cref="MaxNodeCount"/>(capacity) - 1.</param>
    /// <param name="capacity">IDs this node may hand out for the subsystem.</param>
    public ControllerIdPool(int nodeIndex, int capacity = DefaultCapacity)
    {
        if (capacity < 1 || capacity > MaxControllerId)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), capacity,
                $"Controller ID pool capacity must be in 1..{MaxControllerId}.");
        }

        int nodeCount = MaxNodeCount(capacity);
        if (nodeIndex < 0 || nodeIndex >= nodeCount)
        {
            throw new ArgumentOutOfRangeException(nameof(nodeIndex), nodeIndex,
                $"Node index must be in 0..{nodeCount - 1}: with {capacity} controller IDs per node, only {nodeCount} " +
                $"disjoint ranges fit in 1..0x{MaxControllerId:X4} (0xFFF0..0xFFFF are reserved).");
        }

        _inUse = new bool[capacity];
        First = (ushort)(1 + (nodeIndex * capacity));
        Last = (ushort)((nodeIndex + 1) * capacity);
    }

    /// <summary>Lowest ID of this node's range.</summary>
    public ushort First { get; }

    /// <summary>Highest ID of this node's range.</summary>
    public ushort Last { get; }

    public int Capacity => _inUse.Length;

    public int InUse
    {
        get
        {
            lock (_gate)
            {
                return _inUseCount;
            }
        }
    }

    /// <summary>How many nodes get a range of <paramref name="capacity"/> IDs (32 for the default 2030).</summary>
    public static int MaxNodeCount(int capacity = DefaultCapacity) => MaxControllerId / capacity;

    /// <summary>The next free ID after the last one handed out (cyclically); false when all are in use ("controller busy").</summary>
    public bool TryAllocate(out ushort cntlid)
    {
        lock (_gate)
        {
            if (_inUseCount == _inUse.Length)
            {
                cntlid = 0;
                return false;
            }

            int index = _nextIndex;
            while (_inUse[index])
            {
                index = index + 1 == _inUse.Length ? 0 : index + 1;
            }

            _inUse[index] = true;
            _inUseCount++;
            _nextIndex = index + 1 == _inUse.Length ? 0 : index + 1;
            cntlid = (ushort)(First + index);
            return true;
        }
    }

    /// <summary>Returns an ID; releasing one this pool did not hand out is a bug, hence the exception.</summary>
    public void Release(ushort cntlid)
    {
        lock (_gate)
        {
            if (cntlid < First || cntlid > Last)
            {
                throw new InvalidOperationException(
                    $"Controller ID {cntlid} (0x{cntlid:X4}) is outside this pool's range {First}..{Last}.");
            }

            int index = cntlid - First;
            if (!_inUse[index])
            {
                throw new InvalidOperationException($"Controller ID {cntlid} (0x{cntlid:X4}) is not in use (released twice?).");
            }

            _inUse[index] = false;
            _inUseCount--;
        }
    }

    /// <summary>Whether <paramref name="cntlid"/> is currently handed out by this pool.</summary>
    public bool IsInUse(ushort cntlid)
    {
        lock (_gate)
        {
            return cntlid >= First && cntlid <= Last && _inUse[cntlid - First];
        }
    }
}
