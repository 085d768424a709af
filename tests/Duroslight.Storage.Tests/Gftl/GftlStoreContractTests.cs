using Duroslight.Storage.Tests.Volumes;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>The GFTL held to the same contract as every other store (one device, four shards).</summary>
public sealed class GftlStoreContractTests : VolumeStoreContractTests
{
    private readonly GftlScratch _scratch = new();

    protected override IVolumeStore CreateStore() => _scratch.Open();

    public override void Dispose()
    {
        base.Dispose();
        _scratch.Dispose();
    }
}
