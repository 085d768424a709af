using System.Buffers.Binary;
using Duroslight.Core;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using FsCheck;
using FsCheck.Fluent;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// Property: whatever a store is doing when the power fails (<see cref="PowerLossBlockIo"/>: every write not covered
/// by a completed fdatasync is lost, one is torn at 512-byte granularity), the store restarted over the surviving
/// image holds, in every block of every volume, either exactly what a completed Flush (or a graceful stop) made
/// durable, or a version written to that block after it (zeros for a trim): never older data, never data that was
/// never written there, never a torn block. Volumes that existed before the failure still exist, except one whose
/// create/snapshot/clone/delete was in progress. The power fails at a random write or sync, which can land in
/// catalog updates, collections, checkpoints and the next start's own recovery. DUROSLIGHT_POWERLOSS_CASES sets
/// the number of cases (a soak); CI runs the default.
/// </summary>
public sealed class GftlPowerLossTests
{
    private const int Block = 4096;
    private const int Blocks = 96;
    private const int MaxVolumes = 5;

    private enum Op
    {
        Write,
        Trim,
        Flush,
        Snapshot,
        Clone,
        Create,
        Delete,
        Collect,
        Graceful,
    }

    [Fact]
    public void After_a_power_failure_every_block_is_durable_or_a_later_version()
    {
        int cases = int.TryParse(Environment.GetEnvironmentVariable("DUROSLIGHT_POWERLOSS_CASES"), out int n) ? n : 60;
        Gen<Op> kind = Gen.Choose(0, 24).Select(static k => k switch
        {
            <= 11 => Op.Write,
            <= 14 => Op.Trim,
            <= 17 => Op.Flush,
            18 => Op.Snapshot,
            19 => Op.Clone,
            20 => Op.Create,
            21 => Op.Delete,
            22 or 23 => Op.Collect,
            _ => Op.Graceful,
        });
        Gen<Step> step =
            from op in kind
            from volume in Gen.Choose(0, 99)
            from block in Gen.Choose(0, Blocks - 1)
            from count in Gen.Choose(1, 12)
            select new Step(op, volume, block, Math.Min(count, Blocks - block));
        Gen<(int Seed, Step[] Steps)> scenario =
            from seed in Gen.Choose(0, int.MaxValue - 1)
            from steps in step.ArrayOf()
            select (seed, steps);

        Check.One(
            Config.QuickThrowOnFailure.WithMaxTest(cases).WithEndSize(120).WithReplay(20261201UL, 777UL),
            Prop.ForAll(Arb.From(scenario), s => new Run(s.Seed).Execute(s.Steps)));
    }

    private readonly record struct Step(Op Op, int Volume, int Block, int Count);

    /// <summary>What a volume may read back: its latest values, and per block every value it may hold after a power failure.</summary>
    private sealed class ModelVolume(string name, bool readOnly, int[] current, HashSet<int>[] allowed)
    {
        public string Name { get; } = name;
        public bool ReadOnly { get; } = readOnly;
        public int[] Current { get; } = current;
        public HashSet<int>[] Allowed { get; } = allowed;
        public Guid Id { get; set; }

        public static ModelVolume Blank(string name) =>
            new(name, false, new int[Blocks], [.. Enumerable.Range(0, Blocks).Select(_ => new HashSet<int> { 0 })]);

        public ModelVolume Derive(string name, bool readOnly) =>
            new(name, readOnly, (int[])Current.Clone(), [.. Allowed.Select(a => new HashSet<int>(a))]);

        public void Set(int block, int value)
        {
            Current[block] = value;
            Allowed[block].Add(value);
        }

        public void MakeDurable()
        {
            for (int i = 0; i < Blocks; i++)
            {
                Allowed[i].Clear();
                Allowed[i].Add(Current[i]);
            }
        }
    }

    private sealed class Run(int seed)
    {
        private readonly Random _random = new(seed);
        private readonly GftlScratch _scratch = new();
        private readonly List<ModelVolume> _model = [];
        private readonly List<string> _log = [];
        private GftlOptions _options = null!;
        private GftlStore? _store;
        private PowerLossBlockIo _io = null!;
        private (string Name, ModelVolume? Parent, bool ReadOnly)? _creating;
        private ModelVolume? _deleting;
        private int _names;
        private int _nextValue = 1;

        public bool Execute(Step[] steps)
        {
            // Two devices: the metadata is mirrored and records are striped. Formatted before the power is armed
            // (failures during the first format: GftlDeviceMetadataTests).
            _options = _scratch.Options(devices: 2, deviceBytes: 8 * GftlScratch.MiB, shards: 3, segmentBytes: 256 * 1024) with { DirectIo = false };
            try
            {
                _store = new GftlStore(_options);
                _creating = ($"v{_names++}", null, false);
                Finish(_store.Create(_creating.Value.Name, Blocks * Block));
                ArmPower();
                foreach (Step step in steps)
                {
                    _log.Add($"{step.Op} {step.Volume % Math.Max(1, _model.Count)} {step.Block}+{step.Count}");
                    Apply(step);
                    if (_io.Failed)
                    {
                        RecoverAndCheck();
                    }
                }

                _io.FailNow();
                RecoverAndCheck();
                return true;
            }
            catch (Exception e)
            {
                throw new InvalidOperationException($"seed {seed}: {e.Message}\n{_io?.TornSummary}\nafter: {string.Join("; ", _log)}", e);
            }
            finally
            {
                BlockIo.InstallForCurrentThread(null);
                _store?.Dispose();
                _scratch.Dispose();
            }
        }

        /// <summary>A fresh power supply that fails at a random write or sync within the next few hundred.</summary>
        private void ArmPower()
        {
            _io = new PowerLossBlockIo(_random, _random.Next(1, 400));
            BlockIo.InstallForCurrentThread(_io);
        }

        private void Open()
        {
            _store = null;
            try
            {
                _store = new GftlStore(_options);
            }
            catch (Exception e) when (_io.Failed && e is VolumeStoreException or IOException)
            {
                _log.Add($"power failed during start: {e.Message}");
            }
        }

        private void Apply(Step step)
        {
            if (_store is null)
            {
                return;
            }

            ModelVolume target = _model[step.Volume % _model.Count];
            try
            {
                Execute(step, target);
            }
            catch (Exception e) when (_io.Failed && e is VolumeStoreException or IOException)
            {
                _log.Add($"power failed: {e.Message}");
            }
        }

        private void Execute(Step step, ModelVolume target)
        {
            IBlockVolume Volume() => _store!.Open(target.Id);
            switch (step.Op)
            {
                case Op.Write when !target.ReadOnly:
                    int value = _nextValue;
                    _nextValue += step.Count;
                    for (int i = 0; i < step.Count; i++)
                    {
                        target.Set(step.Block + i, value + i); // in flight: allowed from now on, whatever the result
                    }

                    Expect(Volume().WriteAsync((long)step.Block * Block, Data(value, step.Count)).AsTask().GetAwaiter().GetResult());
                    break;
                case Op.Trim when !target.ReadOnly:
                    for (int i = 0; i < step.Count; i++)
                    {
                        target.Set(step.Block + i, 0);
                    }

                    Expect(Volume().DeallocateAsync((long)step.Block * Block, (long)step.Count * Block).AsTask().GetAwaiter().GetResult());
                    break;
                case Op.Flush:
                    if (Expect(Volume().FlushAsync().AsTask().GetAwaiter().GetResult()))
                    {
                        target.MakeDurable();
                    }

                    break;
                case Op.Snapshot or Op.Clone when _model.Count < MaxVolumes:
                    _creating = ($"v{_names++}", target, step.Op == Op.Snapshot);
                    Finish(step.Op == Op.Snapshot ? _store!.Snapshot(target.Id, _creating.Value.Name) : _store!.Clone(target.Id, _creating.Value.Name));
                    break;
                case Op.Create when _model.Count < MaxVolumes:
                    _creating = ($"v{_names++}", null, false);
                    Finish(_store!.Create(_creating.Value.Name, Blocks * Block));
                    break;
                case Op.Delete when _model.Count > 1:
                    _deleting = target;
                    _store!.Delete(target.Id);
                    _model.Remove(target);
                    _deleting = null;
                    break;
                case Op.Collect:
                    _store!.CollectGarbageAsync().GetAwaiter().GetResult();
                    break;
                case Op.Graceful:
                    _store!.Dispose();
                    _store = null;
                    if (!_io.Failed)
                    {
                        _model.ForEach(v => v.MakeDurable());
                    }

                    Open();
                    break;
            }
        }

        /// <summary>Before the power fails every I/O must succeed; after, failures are expected.</summary>
        private bool Expect(StorageResult result)
        {
            Assert.True(result == StorageResult.Ok || _io.Failed, $"I/O failed with {result} before any power failure");
            return result == StorageResult.Ok;
        }

        private void Finish(VolumeDescriptor created)
        {
            var (name, parent, readOnly) = _creating!.Value;
            ModelVolume volume = parent?.Derive(name, readOnly) ?? ModelVolume.Blank(name);
            volume.Id = created.Id;
            _model.Add(volume);
            _creating = null;
        }

        /// <summary>Restarts over what survived (with a power supply that holds) and checks every volume against the model.</summary>
        private void RecoverAndCheck()
        {
            _store?.Dispose(); // every I/O fails now: nothing more reaches the devices
            _store = null;
            BlockIo.InstallForCurrentThread(null);
            _store = new GftlStore(_options);
            _log.Add($"recovered ({_store.Recovery.Kind})");
            Dictionary<string, VolumeDescriptor> listed = _store.List().ToDictionary(v => v.Name);
            AdoptInterruptedCreate(listed);
            foreach (ModelVolume volume in _model.ToArray())
            {
                if (!listed.Remove(volume.Name, out VolumeDescriptor? found))
                {
                    Assert.True(volume == _deleting, $"volume {volume.Name} is gone after the power failure");
                    _model.Remove(volume);
                    continue;
                }

                Assert.Equal(volume.Id, found.Id);
                CheckBlocks(volume);
            }

            Assert.True(listed.Count == 0, $"volumes that were never created: {string.Join(", ", listed.Keys)}");
            _deleting = null;
            _store.Dispose();
            _model.ForEach(v => v.MakeDurable());
            ArmPower();
            Open();
        }

        /// <summary>A create, snapshot or clone the power cut short may or may not have happened: both are fine.</summary>
        private void AdoptInterruptedCreate(Dictionary<string, VolumeDescriptor> listed)
        {
            if (_creating is { } creating && listed.TryGetValue(creating.Name, out VolumeDescriptor? made))
            {
                Finish(made);
            }

            _creating = null;
        }

        private void CheckBlocks(ModelVolume volume)
        {
            byte[] actual = new byte[Blocks * Block];
            Assert.Equal(StorageResult.Ok, _store!.Open(volume.Id).ReadAsync(0, actual).AsTask().GetAwaiter().GetResult());
            for (int i = 0; i < Blocks; i++)
            {
                int seen = BinaryPrimitives.ReadInt32LittleEndian(actual.AsSpan(i * Block));
                Assert.True(
                    volume.Allowed[i].Contains(seen),
                    $"volume {volume.Name} block {i}: read {seen}, allowed {string.Join(",", volume.Allowed[i])} (latest {volume.Current[i]})");
                Assert.True(actual.AsSpan(i * Block, Block).SequenceEqual(Data(seen, 1)), $"volume {volume.Name} block {i} (value {seen}) is torn");
                volume.Current[i] = seen;
            }
        }
    }

    /// <summary>Blocks whose first word is their value (value + i), the rest filled from it so a torn block shows.</summary>
    private static byte[] Data(int value, int count)
    {
        var data = new byte[count * Block];
        for (int i = 0; i < count && value != 0; i++)
        {
            Span<byte> block = data.AsSpan(i * Block, Block);
            block.Fill((byte)(value + i));
            BinaryPrimitives.WriteInt32LittleEndian(block, value + i);
        }

        return data;
    }
}
