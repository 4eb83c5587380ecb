from pathlib import Path

from setuptools import find_packages, setup


setup(
    name="mrm-hf",
    version="0.1.0",
    description="Masked Record Modeling (MRM, ICLR 2023) for chest X-rays, native to the Hugging Face stack",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["mrm_hf", "mrm_hf.*"]),
    # The `evaluate` metric modules are loaded by path, so they ship as files rather than as a package.
    package_data={"mrm_hf": ["metric_modules/*/*.py"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        # The floor is the oldest release CI tests (.ci/run runs the tests on it and on the newest).
        "transformers>=5.24,<6",
        "accelerate>=1.0",
        "datasets>=3.0",
        "evaluate>=0.4",
        "safetensors",
        "huggingface-hub",
        "pillow",
        "numpy",
        "pandas",
        "jinja2",
    ],
    extras_require={
        # Reading DICOM files, including JPEG and JPEG 2000 compressed ones.
        "dicom": ["pydicom>=2.4", "pylibjpeg>=2.0", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"],
        # The label-efficiency grid's figure (examples/run_label_efficiency.py).
        "plot": ["matplotlib"],
        # Why-figures of classifiers (mrm_hf.explain, `python -m mrm_hf.predict --explain`).
        "explain": ["captum>=0.7", "matplotlib"],
        # The demo page (examples/app.py, a Gradio Space): DICOM uploads and the why-heatmaps as well.
        "app": ["gradio>=5", "captum>=0.7", "matplotlib", "pydicom>=2.4", "pylibjpeg>=2.0", "pylibjpeg-libjpeg",
                "pylibjpeg-openjpeg"],
        # LoRA fine-tuning (run_classification.py --lora_rank, the grid's lora mode). transformers 5 needs peft 0.18.0 or
        # later; 0.18.1 also guards an import transformers 5 removed (HybridCache). tests/test_lora.py passes with
        # peft 0.18.1 on transformers 5.24.0 and with 0.21.2 on 5.24.0 and 5.25.0.
        "lora": ["peft>=0.18.1"],
        # timm is the reference the published models were built on; it needs torchvision.
        "test": [
            "pytest",
            # transformers' common model tests (vendored per version in tests/transformers_common) are parameterized with it.
            "parameterized",
            "timm>=1.0",
            "torchvision",
            "scikit-learn",
            "matplotlib",
            "peft>=0.18.1",
            "tensorboard",
            "pydicom>=2.4",
            "pylibjpeg>=2.0",
            "pylibjpeg-libjpeg",
            "pylibjpeg-openjpeg",
            "captum>=0.7",
            # The demo page's browser test drives the system's Chromium (.ci/run installs it) with Playwright.
            "gradio>=5",
            "playwright",
        ],
    },
    entry_points={"console_scripts": ["mrm-hf-predict=mrm_hf.predict:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
