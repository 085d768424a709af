using Duroslight.Storage.Volumes;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Duroslight.Storage.Tests.Volumes;

/// <summary>
/// What every <see cref="IVolumeStore"/> must do. Each store's test class derives from this and adds
/// what is particular to it, so all stores are held to one piece of code.
/// </summary>
public abstract class VolumeStoreContractTests : IDisposable
{
    protected const int Block = 4096;
    protected const int Page = 128 * 1024;
    protected const long MiB = 1024 * 1024;

    private IVolumeStore? _store;

    protected IVolumeStore Store => _store ??= CreateStore();

    /// <summary>A store over the same backing as the previous one (persistent stores see the same volumes).</summary>
    protected abstract IVolumeStore CreateStore();

    public virtual void Dispose()
    {
        _store?.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Whether a reopened store sees the previous one's volumes (every store but memory).</summary>
    protected virtual bool Persists => true;

    protected void ReopenStore()
    {
        _store?.Dispose();
        _store = CreateStore();
    }

    protected IBlockVolume NewVolume(long sizeBytes = 4 * MiB) => Store.Open(Store.Create("vol", sizeBytes).Id);

    [Fact]
    public void Host_lists_are_kept_sorted_and_distinct_and_persist_with_the_volume()
    {
        VolumeDescriptor open = Store.Create("open", MiB);
        VolumeDescriptor masked = Store.Create("masked", MiB, hosts: ["nqn.h:b"]);
        VolumeDescriptor nobody = Store.Create("nobody", MiB, hosts: []);
        Assert.Equal(["nqn.h:b"], masked.Hosts!);

        VolumeDescriptor set = Store.SetHosts(masked.Id, ["nqn.h:b", "nqn.h:a", "nqn.h:b"]);
        Assert.Equal(["nqn.h:a", "nqn.h:b"], set.Hosts!);
        Assert.Null(open.Hosts);
        Assert.Throws<VolumeStoreException>(() => Store.SetHosts(masked.Id, [""]));
        Assert.Throws<VolumeStoreException>(() => Store.SetHosts(Guid.NewGuid(), ["nqn.h:a"]));
        Assert.Equal(["nqn.h:a", "nqn.h:b"], Store.List().Single(d => d.Id == masked.Id).Hosts!);

        if (!Persists) return;
        ReopenStore();
        Assert.Equal(["nqn.h:a", "nqn.h:b"], Store.List().Single(d => d.Id == masked.Id).Hosts!);
        Assert.Null(Store.List().Single(d => d.Id == open.Id).Hosts);
        Assert.Empty(Store.List().Single(d => d.Id == nobody.Id).Hosts!);
        Store.SetHosts(masked.Id, null); // back to any host
        ReopenStore();
        Assert.Null(Store.List().Single(d => d.Id == masked.Id).Hosts);
    }

    /// <summary>A cluster replica's identity: new with every create (a wiped replica differs), the same after a reopen, resize and host change.</summary>
    [Fact]
    public void The_incarnation_is_new_per_create_and_kept_with_the_volume()
    {
        var id = Guid.NewGuid();
        VolumeDescriptor v = Store.Create("inc", 1 << 20, id);
        Assert.NotNull(v.Incarnation);
        Assert.NotEqual(Guid.Empty, v.Incarnation!.Value);
        Assert.NotEqual(v.Incarnation, Store.Create("other", 1 << 20).Incarnation);
        Store.SetHosts(id, ["nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001"]);
        Assert.Equal(v.Incarnation, Store.Resize(id, 2 << 20).Incarnation);
        if (Persists)
        {
            ReopenStore();
            Assert.Equal(v.Incarnation, Store.List().Single(d => d.Id == id).Incarnation);
        }
        Store.Delete(id);
        Assert.NotEqual(v.Incarnation, Store.Create("inc", 1 << 20, id).Incarnation);
    }

    [Fact]
    public void A_reservation_record_is_kept_with_the_volume_and_cleared_by_null()
    {
        VolumeDescriptor v = Store.Create("resv", 1 << 20);
        byte[] record = [1, 2, 3, 4, 5];
        Assert.Equal(record, Store.SetReservation(v.Id, record).Reservation);
        Assert.Throws<VolumeStoreException>(() => Store.SetReservation(Guid.NewGuid(), record));
        Assert.Equal(record, Store.List().Single(d => d.Id == v.Id).Reservation);

        if (!Persists) return;
        ReopenStore();
        Assert.Equal(record, Store.List().Single(d => d.Id == v.Id).Reservation);
        Store.SetReservation(v.Id, null);
        ReopenStore();
        Assert.Null(Store.List().Single(d => d.Id == v.Id).Reservation);
    }

    [Fact]
    public void Create_returns_the_descriptor_and_lists_it()
    {
        var id = Guid.NewGuid();
        VolumeDescriptor created = Store.Create("data", 8 * MiB, id);
        VolumeDescriptor generated = Store.Create("logs", MiB);

        Assert.Equal(new VolumeDescriptor(id, "data", 8 * MiB, Block) { Incarnation = created.Incarnation }, created);
        Assert.NotEqual(Guid.Empty, generated.Id);
        Assert.Equal(new[] { created, generated }, Store.List());
    }

    [Theory]
    [InlineData("", MiB)]
    [InlineData("   ", MiB)]
    [InlineData("v", 0)]
    [InlineData("v", -Block)]
    [InlineData("v", Block + 512)]
    [InlineData("v", 100)]
    public void Create_rejects_bad_names_and_sizes(string name, long sizeBytes)
    {
        Assert.Throws<VolumeStoreException>(() => Store.Create(name, sizeBytes));
        Assert.Empty(Store.List());
    }

    [Fact]
    public void Create_rejects_duplicate_and_empty_ids()
    {
        var id = Guid.NewGuid();
        Store.Create("a", MiB, id);

        var duplicate = Assert.Throws<VolumeStoreException>(() => Store.Create("b", MiB, id));
        Assert.Contains("already exists", duplicate.Message);
        Assert.Throws<VolumeStoreException>(() => Store.Create("c", MiB, Guid.Empty));
        Assert.Single(Store.List());
    }

    [Fact]
    public void Open_returns_the_same_instance_and_refuses_unknown_ids()
    {
        Guid id = Store.Create("v", MiB).Id;

        IBlockVolume volume = Store.Open(id);

        Assert.Same(volume, Store.Open(id));
        Assert.Equal((id, MiB, Block), (volume.Id, volume.SizeBytes, volume.BlockSize));
        Assert.Throws<VolumeStoreException>(() => Store.Open(Guid.NewGuid()));
    }

    [Fact]
    public async Task A_new_volume_is_all_holes()
    {
        IBlockVolume volume = NewVolume();

        Assert.Equal(0, volume.AllocatedBytes);
        Assert.True(IsZero(await ReadAsync(volume, 0, (int)MiB)));
        Assert.True(IsZero(await ReadAsync(volume, volume.SizeBytes - Block, Block)));
    }

    [Theory]
    [InlineData(0, Block)]
    [InlineData(Block, 3 * Block)]
    [InlineData(Page - Block, 2 * Block)] // crosses a 128 KiB page boundary
    [InlineData(Page, Page)]
    [InlineData(MiB - (64 * 1024), 4 * Page)] // spans several pages, unaligned to them
    [InlineData((4 * MiB) - Block, Block)] // the last block
    public async Task Writes_read_back_and_leave_the_rest_zero(long offset, int length)
    {
        IBlockVolume volume = NewVolume();
        byte[] data = Pattern(length, seed: (int)offset);

        Assert.Equal(StorageResult.Ok, await volume.WriteAsync(offset, data));

        Assert.Equal(data, await ReadAsync(volume, offset, length));
        if (offset > 0)
        {
            Assert.True(IsZero(await ReadAsync(volume, offset - Block, Block)));
        }

        if (offset + length < volume.SizeBytes)
        {
            Assert.True(IsZero(await ReadAsync(volume, offset + length, Block)));
        }
    }

    [Fact]
    public async Task Deallocate_frees_space_and_reads_zero()
    {
        IBlockVolume volume = NewVolume();
        await WriteAsync(volume, MiB, Pattern((int)MiB, 1));
        long allocated = volume.AllocatedBytes;
        Assert.True(allocated >= MiB, $"allocated {allocated} after writing 1 MiB");

        Assert.Equal(StorageResult.Ok, await volume.DeallocateAsync(MiB, MiB));

        Assert.True(volume.AllocatedBytes <= allocated - MiB, $"allocated {volume.AllocatedBytes} after deallocating 1 MiB of {allocated}");
        Assert.True(IsZero(await ReadAsync(volume, MiB, (int)MiB)));
    }

    [Fact]
    public async Task Deallocate_of_part_of_a_page_zeroes_exactly_that_range()
    {
        IBlockVolume volume = NewVolume();
        byte[] data = Pattern(2 * Page, 2);
        await WriteAsync(volume, 0, data);

        Assert.Equal(StorageResult.Ok, await volume.DeallocateAsync(Block, Page));

        byte[] expected = (byte[])data.Clone();
        Array.Clear(expected, Block, Page);
        Assert.Equal(expected, await ReadAsync(volume, 0, 2 * Page));
    }

    [Fact]
    public async Task Write_zeroes_reads_zero_keeps_neighbours_and_stays_sparse()
    {
        IBlockVolume volume = NewVolume();
        byte[] data = Pattern(4 * Page, 3);
        await WriteAsync(volume, 0, data);
        long allocated = volume.AllocatedBytes;

        Assert.Equal(StorageResult.Ok, await volume.WriteZeroesAsync(Block, (3 * Page) - Block));

        byte[] expected = (byte[])data.Clone();
        Array.Clear(expected, Block, (3 * Page) - Block);
        Assert.Equal(expected, await ReadAsync(volume, 0, 4 * Page));
        Assert.True(volume.AllocatedBytes <= allocated, "write zeroes must not allocate");
        Assert.Equal(StorageResult.Ok, await volume.WriteZeroesAsync(2 * MiB, MiB)); // already a hole
        Assert.True(volume.AllocatedBytes <= allocated, "write zeroes of a hole must not allocate");
    }

    [Fact]
    public async Task Ranges_outside_the_volume_are_refused()
    {
        IBlockVolume volume = NewVolume(MiB);
        byte[] buffer = new byte[2 * Block];

        Assert.Equal(StorageResult.OutOfRange, await volume.ReadAsync(MiB, buffer.AsMemory(0, Block)));
        Assert.Equal(StorageResult.OutOfRange, await volume.ReadAsync(-Block, buffer.AsMemory(0, Block)));
        Assert.Equal(StorageResult.OutOfRange, await volume.WriteAsync(MiB - Block, buffer));
        Assert.Equal(StorageResult.OutOfRange, await volume.WriteAsync(long.MaxValue - 1, buffer));
        Assert.Equal(StorageResult.OutOfRange, await volume.DeallocateAsync(MiB - Block, 2 * Block));
        Assert.Equal(StorageResult.OutOfRange, await volume.WriteZeroesAsync(0, MiB + Block));
        Assert.Equal(StorageResult.OutOfRange, await volume.DeallocateAsync(0, -Block));
        Assert.Equal(0, volume.AllocatedBytes);
    }

    [Fact]
    public async Task Flush_succeeds()
    {
        IBlockVolume volume = NewVolume();
        await WriteAsync(volume, 0, Pattern(Block, 4));

        Assert.Equal(StorageResult.Ok, await volume.FlushAsync());
    }

    [Fact]
    public async Task Resize_grows_keeps_data_and_the_new_part_reads_zero()
    {
        VolumeDescriptor created = Store.Create("v", MiB);
        IBlockVolume volume = Store.Open(created.Id);
        byte[] data = Pattern(Block, 5);
        await WriteAsync(volume, MiB - Block, data);

        VolumeDescriptor resized = Store.Resize(created.Id, 3 * MiB);

        Assert.Equal(created with { SizeBytes = 3 * MiB }, resized);
        Assert.Equal(new[] { resized }, Store.List());
        Assert.Equal(3 * MiB, volume.SizeBytes);
        Assert.Equal(data, await ReadAsync(volume, MiB - Block, Block));
        Assert.True(IsZero(await ReadAsync(volume, MiB, (int)(2 * MiB))));
        await WriteAsync(volume, (3 * MiB) - Block, data);
        Assert.Equal(data, await ReadAsync(volume, (3 * MiB) - Block, Block));
    }

    [Fact]
    public void Resize_refuses_shrinking_unaligned_sizes_and_unknown_ids()
    {
        Guid id = Store.Create("v", 2 * MiB).Id;

        var shrink = Assert.Throws<VolumeStoreException>(() => Store.Resize(id, MiB));
        Assert.Contains("shrink", shrink.Message);
        Assert.Throws<VolumeStoreException>(() => Store.Resize(id, (2 * MiB) + 1));
        Assert.Throws<VolumeStoreException>(() => Store.Resize(Guid.NewGuid(), 4 * MiB));
        Assert.Equal(2 * MiB, Store.Open(id).SizeBytes);
        Assert.Equal(2 * MiB, Store.Resize(id, 2 * MiB).SizeBytes); // same size: nothing to do
    }

    [Fact]
    public async Task Delete_forgets_the_volume_and_closes_it()
    {
        var id = Guid.NewGuid();
        Store.Create("v", MiB, id);
        IBlockVolume volume = Store.Open(id);
        await WriteAsync(volume, 0, Pattern(Block, 6));

        Store.Delete(id);

        Assert.Empty(Store.List());
        Assert.Throws<VolumeStoreException>(() => Store.Open(id));
        Assert.Throws<VolumeStoreException>(() => Store.Delete(id));
        Assert.Equal(StorageResult.MediaError, await volume.ReadAsync(0, new byte[Block]));
        Assert.Equal(StorageResult.MediaError, await volume.WriteAsync(0, new byte[Block]));

        // The id is free again, and the new volume does not see the old bytes.
        IBlockVolume again = Store.Open(Store.Create("v", MiB, id).Id);
        Assert.True(IsZero(await ReadAsync(again, 0, Block)));
    }

    [Fact]
    public async Task Concurrent_writes_to_disjoint_blocks_of_shared_pages_all_land()
    {
        IBlockVolume volume = NewVolume();
        const int blocks = 128; // 512 KiB: 32 blocks per 128 KiB page
        var writes = new Task<StorageResult>[blocks];
        for (int i = 0; i < blocks; i++)
        {
            int block = i;
            writes[i] = Task.Run(async () => await volume.WriteAsync((long)block * Block, Pattern(Block, block)));
        }

        Assert.All(await Task.WhenAll(writes), result => Assert.Equal(StorageResult.Ok, result));
        for (int i = 0; i < blocks; i++)
        {
            Assert.Equal(Pattern(Block, i), await ReadAsync(volume, (long)i * Block, Block));
        }
    }

    /// <summary>Random writes, deallocates and zeroings, checked against a plain byte array.</summary>
    [Property(MaxTest = 60)]
    public Property Random_operation_sequences_match_a_byte_array_model()
    {
        const int blocks = 96; // 384 KiB: three 128 KiB pages
        Gen<(int Kind, int Block, int Count, int Seed)> operation =
            from kind in Gen.Choose(0, 2)
            from block in Gen.Choose(0, blocks - 1)
            from count in Gen.Choose(1, blocks - block)
            from seed in Gen.Choose(0, 1000)
            select (kind, block, count, seed);

        return Prop.ForAll(Arb.From(operation.ListOf()), operations => MatchesModel(operations, blocks));
    }

    private bool MatchesModel(IEnumerable<(int Kind, int Block, int Count, int Seed)> operations, int blocks)
    {
        IBlockVolume volume = NewVolume((long)blocks * Block);
        var model = new byte[blocks * Block];
        try
        {
            foreach (var (kind, block, count, seed) in operations)
            {
                Apply(volume, model, kind, (long)block * Block, count * Block, seed);
            }

            return model.AsSpan().SequenceEqual(ReadAsync(volume, 0, model.Length).GetAwaiter().GetResult());
        }
        finally
        {
            Store.Delete(volume.Id);
        }
    }

    private static void Apply(IBlockVolume volume, byte[] model, int kind, long offset, int length, int seed)
    {
        StorageResult result;
        if (kind == 0)
        {
            byte[] data = Pattern(length, seed);
            data.CopyTo(model, offset);
            result = volume.WriteAsync(offset, data).AsTask().GetAwaiter().GetResult();
        }
        else
        {
            Array.Clear(model, (int)offset, length);
            ValueTask<StorageResult> zeroing = kind == 1 ? volume.DeallocateAsync(offset, length) : volume.WriteZeroesAsync(offset, length);
            result = zeroing.AsTask().GetAwaiter().GetResult();
        }

        Assert.Equal(StorageResult.Ok, result);
    }

    internal static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    internal static bool IsZero(byte[] bytes) => !bytes.AsSpan().ContainsAnyExcept((byte)0);

    internal static async Task WriteAsync(IBlockVolume volume, long offset, byte[] data) =>
        Assert.Equal(StorageResult.Ok, await volume.WriteAsync(offset, data));

    /// <summary>Reads into a buffer pre-filled with garbage, so zeros in the result come from the volume.</summary>
    internal static async Task<byte[]> ReadAsync(IBlockVolume volume, long offset, int length)
    {
        byte[] buffer = new byte[length];
        Array.Fill(buffer, (byte)0xCC);
        Assert.Equal(StorageResult.Ok, await volume.ReadAsync(offset, buffer));
        return buffer;
    }
}
