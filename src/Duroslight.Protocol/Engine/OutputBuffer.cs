namespace Duroslight.Protocol.Engine;

/// <summary>
/// Bytes the engine wants sent, in order. The array lives on the pinned object heap, so a driver may hand
/// <see cref="BeginSend"/>'s bytes to the kernel (io_uring) while the engine keeps appending: until
/// <see cref="EndSend"/>, the lent bytes are neither moved nor overwritten (growing copies into a new array and
/// leaves the old one to the lender). Grows to the connection's high-water mark, then allocates nothing.
/// </summary>
public sealed class OutputBuffer : IDisposable
{
    private byte[] _buffer;
    private int _start;
    private int _end;
    private bool _lent;

    public OutputBuffer(int initialSize = 64 * 1024) => _buffer = GC.AllocateUninitializedArray<byte>(initialSize, pinned: true);

    public int Length => _end - _start;

    public ReadOnlyMemory<byte> Pending => _buffer.AsMemory(_start, _end - _start);

    /// <summary>A span of at least <paramref name="size"/> writable bytes; commit them with <see cref="Advance"/>.</summary>
    public Span<byte> GetSpan(int size)
    {
        if (_buffer.Length - _end < size) MakeRoom(size);
        return _buffer.AsSpan(_end);
    }

    public void Advance(int count) => _end += count;

    public void Write(ReadOnlySpan<byte> data)
    {
        data.CopyTo(GetSpan(data.Length));
        _end += data.Length;
    }

    public void Consume(int count)
    {
        _start += count;
        if (_start == _end) _start = _end = 0;
    }

    /// <summary>Lends the pending bytes to an asynchronous send; they stay put until <see cref="EndSend"/>.</summary>
    public ReadOnlyMemory<byte> BeginSend()
    {
        if (_lent) throw new InvalidOperationException("a send is already in flight");
        _lent = true;
        return Pending;
    }

    /// <summary>The send took <paramref name="sent"/> bytes from the front of what was lent.</summary>
    public void EndSend(int sent)
    {
        _lent = false;
        Consume(sent);
    }

    public void Dispose()
    {
        _buffer = [];
        _start = _end = 0;
    }

    private void MakeRoom(int size)
    {
        int live = _end - _start;
        if (!_lent && _buffer.Length - live >= size && _start > 0)
        {
            _buffer.AsSpan(_start, live).CopyTo(_buffer);
        }
        else
        {
            var bigger = GC.AllocateUninitializedArray<byte>(Math.Max(_buffer.Length * 2, live + size), pinned: true);
            _buffer.AsSpan(_start, live).CopyTo(bigger);
            _buffer = bigger;
        }
        _start = 0;
        _end = live;
    }
}
