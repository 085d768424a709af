using System.Buffers.Binary;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using FsCheck;
using FsCheck.Fluent;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// Property: any sequence of writes, deallocates, snapshots, clones, deletes, collections and restarts (graceful,
/// abrupt, torn checkpoint) leaves every volume reading exactly like a simple model (an array of block values per
/// volume, snapshots and clones as copies). Small segments and devices, so the collector runs under pressure.
/// </summary>
public sealed class GftlModelTests
{
    private const int Block = 4096;
    private const int Blocks = 96; // three 128 KiB chunks: spans shards and chunk boundaries
    private const int MaxVolumes = 6;

    private enum Op
    {
        Write,
        Trim,
        Snapshot,
        Clone,
        Delete,
        Collect,
        Graceful,
        Abrupt,
        Torn,
    }

    [Fact]
    public void Any_operation_sequence_matches_the_model()
    {
        Gen<Op> kind = Gen.Choose(0, 21).Select(static k => k switch
        {
            <= 9 => Op.Write,
            <= 12 => Op.Trim,
            13 => Op.Snapshot,
            14 => Op.Clone,
            15 => Op.Delete,
            16 or 17 => Op.Collect,
            18 or 19 => Op.Graceful,
            20 => Op.Abrupt,
            _ => Op.Torn,
        });
        Gen<(Op Op, int Volume, int Block, int Count, int Value)> operation =
            from op in kind
            from volume in Gen.Choose(0, 99)
            from block in Gen.Choose(0, Blocks - 1)
            from count in Gen.Choose(1, 12)
            from value in Gen.Choose(1, int.MaxValue - 1)
            select (op, volume, block, Math.Min(count, Blocks - block), value);

        Check.One(
            Config.QuickThrowOnFailure.WithMaxTest(200).WithReplay(20261121UL, 12345UL),
            Prop.ForAll(Arb.From(operation.ListOf()), operations => Run(operations)));
    }

    private static bool Run(IEnumerable<(Op Op, int Volume, int Block, int Count, int Value)> operations)
    {
        using var scratch = new GftlScratch();
        GftlOptions options = scratch.Options(deviceBytes: 8 * GftlScratch.MiB, shards: 3, segmentBytes: 256 * 1024);
        var store = new GftlStore(options);
        try
        {
            var model = new List<ModelVolume> { new(store.Create("v", Blocks * Block).Id, false, new int[Blocks]) };
            var done = new List<string>();
            try
            {
                foreach (var (op, volume, block, count, value) in operations)
                {
                    ModelVolume target = model[volume % model.Count];
                    done.Add($"{op} v{model.IndexOf(target)} {block}+{count}");
                    store = Apply(store, options, scratch, model, target, op, block, count, value);
                }

                AssertMatches(store, model);
            }
            catch (Exception e) when (e is not ObjectDisposedException)
            {
                throw new InvalidOperationException($"{e.Message}\nafter: {string.Join("; ", done)}", e);
            }

            return true;
        }
        finally
        {
            store.Dispose();
        }
    }

    private static GftlStore Apply(GftlStore store, GftlOptions options, GftlScratch scratch, List<ModelVolume> model, ModelVolume target, Op op, int block, int count, int value)
    {
        switch (op)
        {
            case Op.Write when !target.ReadOnly:
                Assert.Equal(StorageResult.Ok, store.Open(target.Id).WriteAsync((long)block * Block, Data(value, count)).AsTask().GetAwaiter().GetResult());
                for (int i = 0; i < count; i++)
                {
                    target.Blocks[block + i] = value + i;
                }

                break;
            case Op.Trim when !target.ReadOnly:
                Assert.Equal(StorageResult.Ok, store.Open(target.Id).DeallocateAsync((long)block * Block, (long)count * Block).AsTask().GetAwaiter().GetResult());
                Array.Clear(target.Blocks, block, count);
                break;
            case Op.Snapshot or Op.Clone when model.Count < MaxVolumes:
                VolumeDescriptor derived = op == Op.Snapshot ? store.Snapshot(target.Id, "s") : store.Clone(target.Id, "c");
                model.Add(new ModelVolume(derived.Id, op == Op.Snapshot, (int[])target.Blocks.Clone()));
                break;
            case Op.Delete when model.Count > 1:
                store.Delete(target.Id);
                model.Remove(target);
                break;
            case Op.Collect:
                store.CollectGarbageAsync().GetAwaiter().GetResult();
                break;
            case Op.Graceful or Op.Abrupt or Op.Torn:
                store.Dispose();
                if (op != Op.Graceful)
                {
                    scratch.TearCheckpoint();
                }

                store = new GftlStore(options);
                Assert.Equal(op == Op.Graceful ? GftlStartKind.Checkpoint : GftlStartKind.Scan, store.Recovery.Kind);
                AssertMatches(store, model);
                break;
        }

        return store;
    }

    private static void AssertMatches(GftlStore store, List<ModelVolume> model)
    {
        Assert.Equal(model.Select(v => v.Id).Order(), store.List().Select(v => v.Id).Order());
        foreach (ModelVolume volume in model)
        {
            byte[] actual = new byte[Blocks * Block];
            Assert.Equal(StorageResult.Ok, store.Open(volume.Id).ReadAsync(0, actual).AsTask().GetAwaiter().GetResult());
            for (int i = 0; i < Blocks; i++)
            {
                int seen = BinaryPrimitives.ReadInt32LittleEndian(actual.AsSpan(i * Block));
                Assert.True(seen == volume.Blocks[i], $"volume {volume.Id} block {i}: read {seen}, model {volume.Blocks[i]}");
                Assert.True(actual.AsSpan(i * Block, Block).SequenceEqual(Data(seen, 1)), $"volume {volume.Id} block {i} is torn");
            }
        }
    }

    /// <summary>Blocks whose first word is their value (value + i), the rest filled from it so a torn block shows.</summary>
    private static byte[] Data(int value, int count)
    {
        var data = new byte[count * Block];
        for (int i = 0; i < count; i++)
        {
            Span<byte> block = data.AsSpan(i * Block, Block);
            if (value == 0)
            {
                continue;
            }

            block.Fill((byte)(value + i));
            BinaryPrimitives.WriteInt32LittleEndian(block, value + i);
        }

        return data;
    }

    private sealed record ModelVolume(Guid Id, bool ReadOnly, int[] Blocks);
}
