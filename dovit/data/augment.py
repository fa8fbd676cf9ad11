"""Training augmentation presets, built from albumentations transforms.

``standard`` is the recipe the shipped models were trained with: random scale 0.5-2, crop (padding with
ignore), horizontal flip, colour jitter, and (``camera`` > 0) gamma, blur, sensor noise and JPEG.

``robust`` adds what street photos from other cities and cameras differ by: colour temperature
(black-body white balance), per-channel gains, HSV shifts, grayscale, gamma, blur, noise, JPEG, fog,
shadows, sun flare, and crops of other aspect ratios resized to the training size (users' photos are
16:9 and wider; the Predictor squeezes them to the model's 4:3 working size, so objects look narrower).

Some of the robustness benchmark's shifts (``dovit.robustness.SHIFTS``) are kept out of training so the
benchmark also measures shifts the model never saw: ``HELD_OUT_SHIFTS``.
"""
from __future__ import annotations

import albumentations as A
import cv2

AUGMENT_PRESETS = ("standard", "robust")

# Benchmark shifts that no training preset draws (dovit.robustness reports them apart).
HELD_OUT_SHIFTS = ("shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "zoom_blur", "snow",
                   "pixelate",
                   "tint")


def _geometry(crop_size: tuple[int, int], scale_range: tuple[float, float], ignore_index: int) -> list:
    """Random scale, pad to the crop (image 0, label ignore), random crop, horizontal flip."""
    crop_h, crop_w = crop_size
    low, high = scale_range
    return [
        A.RandomScale(scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR, p=1.0),
        A.PadIfNeeded(min_height=crop_h, min_width=crop_w, position="top_left",
                      border_mode=cv2.BORDER_CONSTANT,
                      fill=0, fill_mask=ignore_index),
        A.RandomCrop(height=crop_h, width=crop_w),
        A.HorizontalFlip(p=0.5),
    ]


def _aspect_crop(crop_size: tuple[int, int], p: float) -> A.BasicTransform:
    """A crop 1 to 2.4 times as wide as tall, resized to the training crop: the squeeze a 16:9 or wider
    photo gets at the model's 4:3 working size."""
    return A.RandomResizedCrop(size=crop_size, scale=(0.3, 1.0), ratio=(1.0, 2.4),
                               interpolation=cv2.INTER_LINEAR,
                               mask_interpolation=cv2.INTER_NEAREST, p=p)


def _camera(p: float) -> list:
    """The shipped recipe's camera effects, each with probability p."""
    return [
        A.RandomGamma(gamma_limit=(60, 160), p=p),
        A.GaussianBlur(sigma_limit=(0.3, 1.5), p=p),
        A.GaussNoise(std_range=(2 / 255, 10 / 255), p=p),
        A.ImageCompression(quality_range=(30, 90), p=p),
    ]


def robust_photometric() -> list:
    """Colour and camera shifts of photos from elsewhere (not HELD_OUT_SHIFTS)."""
    return [
        A.PlanckianJitter(mode="blackbody", temperature_limit=(3000, 15000), p=0.4),
        A.MultiplicativeNoise(multiplier=(0.75, 1.25), per_channel=True, elementwise=False, p=0.3),
        A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=40, val_shift_limit=25, p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3, p=0.5),
        A.RandomGamma(gamma_limit=(60, 160), p=0.3),
        A.ToGray(p=0.05),
        A.OneOf([A.RandomFog(fog_coef_range=(0.1, 0.35), alpha_coef=0.08),
                 A.RandomShadow(shadow_roi=(0, 0.5, 1, 1), num_shadows_limit=(1, 3)),
                 A.RandomSunFlare(flare_roi=(0, 0, 1, 0.5), src_radius=120, num_flare_circles_range=(3, 6))],
                p=0.25),
        A.OneOf([A.GaussianBlur(sigma_limit=(0.3, 1.8)), A.MotionBlur(blur_limit=(3, 9))], p=0.3),
        A.GaussNoise(std_range=(0.01, 0.08), p=0.3),
        A.ImageCompression(quality_range=(25, 95), p=0.3),
    ]


def build_augment(preset: str, crop_size: tuple[int, int], scale_range=(0.5, 2.0), jitter: float = 0.3,
                  camera: float = 0.0, ignore_index: int = 255) -> A.Compose:
    """The albumentations pipeline of a named preset; image uint8 RGB and label mask in, same size out."""
    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of "
                         f"{', '.join(AUGMENT_PRESETS)}")
    if not 0.0 <= camera <= 1.0:
        raise ValueError(f"camera augmentation probability must lie in [0, 1], got {camera}")
    crop_size = (int(crop_size[0]), int(crop_size[1]))
    steps = _geometry(crop_size, tuple(scale_range), ignore_index)
    if preset == "robust":
        steps.append(_aspect_crop(crop_size, p=0.5))
    if jitter > 0:
        steps.append(A.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=0.05, p=1.0))
    if preset == "robust":
        steps += robust_photometric()
    elif camera > 0:
        steps += _camera(camera)
    return A.Compose(steps)
