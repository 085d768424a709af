namespace Duroslight.Protocol.Engine;

/// <summary>
/// Bytes the engine wants sent, in order. Arrays live on the pinned object heap, so a driver may hand
/// <see cref="BeginSend"/>'s bytes to the kernel (io_uring) while the engine keeps appending. Until
/// <see cref="EndSend"/> the array holding the lent bytes is never written before its end: when its tail is full,
/// live bytes move to the other of two arrays (the lent one becomes the spare once the send ends). Sizes grow only
/// to the connection's high-water mark of unsent bytes, then nothing is allocated.
/// </summary>
public sealed class OutputBuffer : IDisposable
{
    private byte[] _buffer;
    private byte[]? _spare;
    private byte[]? _lentArray;
    private int _start;
    private int _end;

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
        if (_lentArray is not null) throw new InvalidOperationException("a send is already in flight");
        _lentArray = _buffer;
        return Pending;
    }

    /// <summary>The send took <paramref name="sent"/> bytes from the front of what was lent.</summary>
    public void EndSend(int sent)
    {
        if (!ReferenceEquals(_lentArray, _buffer)) _spare = _lentArray;
        _lentArray = null;
        Consume(sent);
    }

    public void Dispose()
    {
        _buffer = [];
        _spare = _lentArray = null;
        _start = _end = 0;
    }

    private void MakeRoom(int size)
    {
        int live = _end - _start;
        bool fits = _buffer.Length - live >= size;
        if (fits && !ReferenceEquals(_buffer, _lentArray))
        {
            _buffer.AsSpan(_start, live).CopyTo(_buffer);
        }
        else
        {
            var next = _spare is { } spare && spare.Length - live >= size
                ? spare
                : GC.AllocateUninitializedArray<byte>(fits ? _buffer.Length : Math.Max(_buffer.Length * 2, live + size), pinned: true);
            _buffer.AsSpan(_start, live).CopyTo(next);
            // A lent array comes back as the spare in EndSend; any other old array is the spare now.
            _spare = ReferenceEquals(_buffer, _lentArray) ? null : _buffer;
            _buffer = next;
        }
        _start = 0;
        _end = live;
    }
}
