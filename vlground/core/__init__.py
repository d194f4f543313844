"""The types every layer shares: model families (families), coordinate frames and smart_resize
(geometry), load and generation options (options), the device check (device), and detections and
results (results). Below them are only vlground.io and vlground.viz, which know none of these types."""
