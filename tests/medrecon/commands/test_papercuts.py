"""What a new user trips over first: flags in any case, outputs of one stem, bad option values."""

from __future__ import annotations

import pytest

from medrecon.commands import main
from medrecon.errors import InputError
from medrecon.study import Study
from tests import support


def test_modality_is_accepted_in_any_case_and_refused_when_unknown(tmp_path, capsys):
    for i, modality in enumerate(("ct", "CT", "Ct")):
        out = tmp_path / f"sim-{i}"
        assert main(["simulate", str(support.CT_SAMPLE), "-o", str(out), "--modality", modality, "--slices", "0:1",
                     "--views", "8"]) == 0
        assert (out / "acquisition.json").is_file()
    assert main(["simulate", str(support.CT_SAMPLE), "-o", str(tmp_path / "x"), "--modality", "pet"]) == 2
    assert "expected CT or MR (any case), got 'pet'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_nifti_and_an_nrrd_of_one_stem_do_not_share_a_record(tmp_path):
    import torch

    from medrecon.io.studies import save_study

    study = Study(torch.zeros(2, 8, 8, dtype=torch.int16), torch.eye(4).numpy(), "CT", name="s")
    save_study(study, tmp_path / "recon.nii.gz")
    before = (tmp_path / "recon.json").read_bytes()
    for overwrite in (False, True):  # replacing recon.json would strip recon.nii.gz of its record
        with pytest.raises(InputError, match=r"would share the record recon\.json.*recon-nrrd\.nrrd"):
            save_study(study, tmp_path / "recon.nrrd", overwrite=overwrite)
    assert (tmp_path / "recon.json").read_bytes() == before and not (tmp_path / "recon.nrrd").exists()
    save_study(study, tmp_path / "recon-nrrd.nrrd")  # the suggested name works


def test_reconstruct_refuses_an_output_whose_record_another_output_owns(tmp_path, cli_priors, capsys):
    (tmp_path / "recon.nii.gz").write_bytes(b"an earlier reconstruction")
    (tmp_path / "recon.json").write_text('{"Modality": "CT"}')  # its record
    code = main(["reconstruct", str(support.CT_SAMPLE), "-o", str(tmp_path / "recon.nrrd"), "--modality", "CT",
                 "--slices", "0:1", "--steps", "1", "--prior", str(cli_priors["CT"]), "--overwrite", "--quiet"])
    assert code == 2 and "would share the record recon.json" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recon.json", "recon.nii.gz"]


def test_a_same_stem_folder_without_a_record_does_not_block_an_output(tmp_path):
    import torch

    from medrecon.io.studies import save_study

    (tmp_path / "recon").mkdir()  # an unrelated folder: no recon.json to take from anyone
    save_study(Study(torch.zeros(2, 8, 8, dtype=torch.int16), torch.eye(4).numpy(), "CT", name="s"), tmp_path / "recon.nii.gz")
    assert (tmp_path / "recon.json").is_file()


@pytest.mark.parametrize("option, message", [("gamma_rel=abc", "dds option gamma_rel takes float or None, got 'abc'"),
                                             ("cg_iters=2.5", "dds option cg_iters takes int"),
                                             ("no_such=1", "dds has no option")])
def test_a_bad_option_value_is_refused_before_any_work(tmp_path, cli_priors, capsys, option, message):
    out = tmp_path / "r.nii.gz"
    code = main(["reconstruct", str(support.CT_SAMPLE), "-o", str(out), "--modality", "CT", "--slices", "0:1",
                 "--prior", str(cli_priors["CT"]), "--option", option, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
