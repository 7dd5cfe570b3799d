"""GenApi XML device descriptions for tests: real genicam node maps with in-memory nodes.

viky.cti has no trigger/exposure/gain/offset nodes; these descriptions give the node-map code the
SFNC features of a scientific camera, loaded by the real GenApi library (no port, no transport).
"""
from __future__ import annotations

from genicam.genapi import NodeMap

_HEAD = ('<?xml version="1.0" encoding="utf-8"?>\n'
         '<RegisterDescription ModelName="TestCam" VendorName="steerlab" ToolTip="test device" '
         'StandardNameSpace="None" SchemaMajorVersion="1" SchemaMinorVersion="1" SchemaSubMinorVersion="0" '
         'MajorVersion="1" MinorVersion="0" SubMinorVersion="0" '
         'ProductGuid="11111111-2222-3333-4444-555555555555" VersionGuid="11111111-2222-3333-4444-555555555556" '
         'xmlns="http://www.genicam.org/GenApi/Version_1_1" '
         'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
         'xsi:schemaLocation="http://www.genicam.org/GenApi/Version_1_1 '
         'http://www.genicam.org/GenApi/GenApiSchema_Version_1_1.xsd">\n')


def _int(name: str, value: int, lo: int, hi: int, inc: int = 1) -> str:
    return (f'<Integer Name="{name}" NameSpace="Standard"><Value>{value}</Value><Min>{lo}</Min>'
            f'<Max>{hi}</Max><Inc>{inc}</Inc></Integer>\n')


def _float(name: str, value: float, lo: float, hi: float, unit: str) -> str:
    return (f'<Float Name="{name}" NameSpace="Standard"><Value>{value}</Value><Min>{lo}</Min>'
            f'<Max>{hi}</Max><Unit>{unit}</Unit></Float>\n')


def _enum(name: str, entries: tuple[str, ...], access: str = "RW") -> str:
    body = "".join(f'<EnumEntry Name="{e}" NameSpace="Standard"><Value>{i}</Value></EnumEntry>'
                   for i, e in enumerate(entries))
    return (f'<Enumeration Name="{name}" NameSpace="Standard"><ImposedAccessMode>{access}</ImposedAccessMode>'
            f'{body}<Value>0</Value></Enumeration>\n')


def device_xml(*, offsets: bool = True, exposure: str | None = "ExposureTime", gain: bool = True,
               selectors: tuple[str, ...] = ("AcquisitionStart", "FrameStart"),
               sources: tuple[str, ...] = ("Line0", "Line1", "Software"),
               formats: tuple[str, ...] = ("Mono8", "Mono12", "Mono16"),
               frame_rate: bool = True) -> str:
    """A device description with the requested optional features (sensor 1024 x 768, steps of 16/2)."""
    nodes = [_int("Width", 1024, 16, 1024, 16), _int("Height", 768, 2, 768, 2),
             _enum("PixelFormat", formats), _enum("AcquisitionMode", ("Continuous",), access="RO"),
             _int("PayloadSize", 1024 * 768 * 2, 0, 2**32)]
    if offsets:
        nodes += [_int("OffsetX", 0, 0, 1008, 16), _int("OffsetY", 0, 0, 766, 2)]
    if exposure:
        nodes += [_float(exposure, 1000.0, 10.0, 1e6, "us"), _enum("ExposureAuto", ("Continuous", "Off")),
                  _enum("ExposureMode", ("Timed", "TriggerWidth"))]
    if gain:
        nodes += [_float("Gain", 0.0, 0.0, 24.0, "dB"), _enum("GainAuto", ("Continuous", "Off"))]
    if frame_rate:
        nodes += [_float("AcquisitionFrameRate", 10.0, 0.1, 100.0, "Hz"),
                  '<Integer Name="FrameRateEnableReg"><Value>0</Value></Integer>\n'
                  '<Boolean Name="AcquisitionFrameRateEnable" NameSpace="Standard">'
                  '<pValue>FrameRateEnableReg</pValue><OnValue>1</OnValue><OffValue>0</OffValue></Boolean>\n']
    if selectors:
        nodes += [_enum("TriggerSelector", selectors), _enum("TriggerMode", ("Off", "On")),
                  _enum("TriggerSource", sources), _enum("TriggerActivation", ("FallingEdge", "RisingEdge")),
                  '<Integer Name="TriggerSoftwareReg"><Value>0</Value></Integer>\n'
                  '<Command Name="TriggerSoftware" NameSpace="Standard"><pValue>TriggerSoftwareReg</pValue>'
                  '<CommandValue>1</CommandValue></Command>\n']
        if "FrameBurstStart" in selectors:
            nodes.append(_int("AcquisitionBurstFrameCount", 4, 1, 255))
    return _HEAD + '<Category Name="Root" NameSpace="Standard"><pFeature>Width</pFeature></Category>\n' \
        + "".join(nodes) + "</RegisterDescription>\n"


def load(xml: str) -> NodeMap:
    """A genicam NodeMap built from ``xml``."""
    nm = NodeMap()
    nm.load_xml_from_string(xml)
    return nm
