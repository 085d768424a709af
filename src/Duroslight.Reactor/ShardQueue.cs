using System.Runtime.InteropServices;

namespace Duroslight.Reactor;

/// <summary>A counter alone on its cache line: producers and the consumer write different lines (no false sharing).</summary>
[StructLayout(LayoutKind.Explicit, Size = 128)]
internal struct PaddedPosition
{
    [FieldOffset(64)] public long Value;
}

/// <summary>
/// Bounded lock-free multi-producer, single-consumer queue (Vyukov's array queue): the only way work crosses
/// into a shard. Fixed capacity, so handing work over allocates nothing.
/// </summary>
internal sealed class ShardQueue<T> where T : class
{
    private struct Cell
    {
        public long Sequence;
        public T? Item;
    }

    private readonly Cell[] _cells;
    private readonly long _mask;
    private PaddedPosition _enqueue;
    private PaddedPosition _dequeue;

    public ShardQueue(int capacity)
    {
        if (capacity < 2 || (capacity & (capacity - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(capacity), "a power of two");
        _cells = new Cell[capacity];
        _mask = capacity - 1;
        for (int i = 0; i < capacity; i++) _cells[i].Sequence = i;
    }

    public bool IsEmpty
    {
        get
        {
            long position = Volatile.Read(ref _dequeue.Value);
            return Volatile.Read(ref _cells[position & _mask].Sequence) != position + 1;
        }
    }

    /// <summary>Any thread. False when full.</summary>
    public bool TryEnqueue(T item)
    {
        long position = Volatile.Read(ref _enqueue.Value);
        while (true)
        {
            ref Cell cell = ref _cells[position & _mask];
            long sequence = Volatile.Read(ref cell.Sequence);
            long difference = sequence - position;
            if (difference == 0)
            {
                long seen = Interlocked.CompareExchange(ref _enqueue.Value, position + 1, position);
                if (seen == position)
                {
                    cell.Item = item;
                    Volatile.Write(ref cell.Sequence, position + 1);
                    return true;
                }
                position = seen;
            }
            else if (difference < 0)
            {
                return false;
            }
            else
            {
                position = Volatile.Read(ref _enqueue.Value);
            }
        }
    }

    /// <summary>The owning shard only.</summary>
    public bool TryDequeue(out T item)
    {
        long position = _dequeue.Value;
        ref Cell cell = ref _cells[position & _mask];
        if (Volatile.Read(ref cell.Sequence) != position + 1)
        {
            item = null!;
            return false;
        }
        item = cell.Item!;
        cell.Item = null;
        Volatile.Write(ref cell.Sequence, position + _mask + 1);
        _dequeue.Value = position + 1;
        return true;
    }
}
