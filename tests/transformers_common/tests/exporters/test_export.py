# Stand-in for transformers' tests/exporters/test_export.py, which transformers' sdists do not ship (see
# ../../__init__.py). `ModelTesterMixin` inherits `ExportTesterMixin` and sets `test_torch_exportable`; this version
# checks what that flag promises: each model class exports with torch.export and the exported program gives the
# eager model's outputs.
import torch


class ExportTesterMixin:
    test_torch_exportable = True

    def test_torch_export(self):
        if not self.test_torch_exportable:
            self.skipTest(f"{self.__class__.__name__} sets test_torch_exportable = False")
        for model_class in self.all_model_classes:
            with self.subTest(model_class.__name__):
                config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
                inputs = self._prepare_for_class(inputs_dict, model_class)
                model = model_class(config).eval()
                with torch.no_grad():
                    expected = model(**inputs)
                    program = torch.export.export(model, args=(), kwargs=inputs, strict=False)
                    exported = program.module()(**inputs)
                expected = {k: v for k, v in expected.items() if isinstance(v, torch.Tensor)}
                self.assertTrue(expected, f"{model_class.__name__} returned no tensor to compare")
                for key, value in expected.items():
                    torch.testing.assert_close(exported[key], value, rtol=1e-5, atol=1e-5, msg=key)
