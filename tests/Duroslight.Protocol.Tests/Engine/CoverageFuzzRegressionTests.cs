using System.Runtime.CompilerServices;
using Duroslight.Fuzz;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>
/// The AFL++ receive-path target (bench/fuzz) without AFL: the committed seed corpus is what the host library records
/// today, and every seed and every input AFL++ ever found (bench/fuzz/regressions) runs clean.
/// </summary>
public class CoverageFuzzRegressionTests
{
    private static string FuzzDir([CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "../../../bench/fuzz"));

    [Fact]
    public void Committed_corpus_matches_what_the_host_library_records()
    {
        var dir = Path.Combine(FuzzDir(), "corpus");
        var expected = Seeds.All().ToList();
        Assert.Equal(expected.Select(s => s.Name).Order(StringComparer.Ordinal),
            Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        foreach (var (name, input) in expected)
            Assert.True(input.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(dir, name))),
                $"bench/fuzz/corpus/{name} is stale: regenerate with `duroslight-fuzz seeds bench/fuzz/corpus` (bench/fuzz/README.md)");
    }

    public static TheoryData<string> Inputs()
    {
        var data = new TheoryData<string>();
        foreach (var sub in new[] { "corpus", "regressions" })
        {
            var dir = Path.Combine(FuzzDir(), sub);
            if (!Directory.Exists(dir)) continue;
            foreach (var f in Directory.GetFiles(dir).Order(StringComparer.Ordinal)) data.Add(sub + "/" + Path.GetFileName(f));
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Input_runs_clean(string relative) => ReceivePath.Run(File.ReadAllBytes(Path.Combine(FuzzDir(), relative)));

    [Fact]
    public void Terminated_empty_and_setup_only_inputs_run_clean()
    {
        // A valid admin session, then a C2H-only PDU type from the host: the target must terminate, exactly once.
        var input = File.ReadAllBytes(Path.Combine(FuzzDir(), "corpus", "admin-identify-features"));
        ReceivePath.Run([.. input, 0x07, 0, 24, 0, 24, 0, 0, 0, .. new byte[16]]);
        ReceivePath.Run([]);
        ReceivePath.Run([0xFF]);
    }
}
